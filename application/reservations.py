"""The reservation commands: placed and cancelled by customers, the rest by the saga."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from application.commands import Payload, ResourceId, SeatLabel
from application.registry import CommandRegistry, CommandSpec
from application.unit_of_work import UnitOfWork
from domain.errors import ConflictError
from domain.payment import Payment
from domain.reservation import Reservation, ReservationStateError
from domain.reservation_saga import ReservationSaga
from domain.show import Show
from domain.waiting_list import WaitingList


class ReservationExistsError(ConflictError):
    """Raised when a reservation is placed with an id another reservation has."""


class PlaceReservation(Payload):
    """Reserve seats of a show for a customer, paying with a card token."""

    reservation_id: ResourceId
    show_id: ResourceId
    customer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    seats: Annotated[list[SeatLabel], Field(min_length=1, max_length=50)]
    card_token: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class CancelReservation(Payload):
    """Cancel a reservation: its seats are released and its payment refunded."""

    reservation_id: ResourceId
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)] = (
        "cancelled by the customer"
    )


class ReservationStep(Payload):
    """A step the saga takes for one reservation."""

    reservation_id: ResourceId


class RejectReservation(ReservationStep):
    """Release the seats and reject (compensation)."""

    reason: str


class PromoteWaitingCustomers(Payload):
    """Offer freed seats of a show to those waiting for them, first in line first."""

    show_id: ResourceId


def _reservation(uow: UnitOfWork, reservation_id: str) -> Reservation:
    return uow.get(Reservation, Reservation.create_id(reservation_id))


def _show(uow: UnitOfWork, reservation: Reservation) -> Show:
    return uow.get(Show, Show.create_id(reservation.show_id))


def place_reservation(uow: UnitOfWork, cmd: PlaceReservation) -> None:
    """Create the reservation; its saga takes it from there."""
    show = uow.get(Show, Show.create_id(cmd.show_id))
    show.check_bookable(list(cmd.seats))
    if uow.exists(Reservation.create_id(cmd.reservation_id)):
        raise ReservationExistsError(f"reservation {cmd.reservation_id} already exists")
    uow.add(
        Reservation(
            reservation_id=cmd.reservation_id,
            show_id=cmd.show_id,
            customer_id=cmd.customer_id,
            seats=list(cmd.seats),
            card_token=cmd.card_token,
            price_cents=show.price_cents,
        )
    )


def cancel_reservation(uow: UnitOfWork, cmd: CancelReservation) -> None:
    """Cancel, release the seats, leave the waiting list, refund a captured payment."""
    reservation = _reservation(uow, cmd.reservation_id)
    reservation.cancel(cmd.reason)
    _show(uow, reservation).release_seats(reservation.reservation_id)
    waiting = uow.find(WaitingList, WaitingList.create_id(reservation.show_id))
    if waiting is not None:
        waiting.leave(reservation.reservation_id)
    _refund_if_captured(uow, reservation.reservation_id)


def reserve_seats(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Hold the reservation's seats."""
    reservation = _reservation(uow, cmd.reservation_id)
    if reservation.status != "pending":
        raise ReservationStateError(f"reservation {cmd.reservation_id} is {reservation.status}")
    _show(uow, reservation).reserve_seats(reservation.reservation_id, reservation.seats)


def charge_payment(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Charge the card once (the gateway's idempotency key sees to that)."""
    reservation = _reservation(uow, cmd.reservation_id)
    payment = uow.find(Payment, Payment.create_id(cmd.reservation_id))
    if payment is None:
        payment = Payment(
            reservation_id=cmd.reservation_id,
            amount_cents=reservation.amount_cents,
            card_token=reservation.card_token,
        )
        uow.add(payment)
    if payment.status != "requested":
        return
    result = uow.services.payment_gateway.charge(
        payment.idempotency_key, payment.amount_cents, payment.card_token
    )
    if result.approved:
        payment.capture(result.reference or "")
    else:
        payment.decline(result.reason or "declined")


def confirm_reservation(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Sell the held seats and confirm."""
    reservation = _reservation(uow, cmd.reservation_id)
    _show(uow, reservation).sell_seats(reservation.reservation_id)
    reservation.confirm()


def reject_reservation(uow: UnitOfWork, cmd: RejectReservation) -> None:
    """Release the seats and reject."""
    reservation = _reservation(uow, cmd.reservation_id)
    _show(uow, reservation).release_seats(reservation.reservation_id)
    reservation.reject(cmd.reason)


def waitlist_reservation(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Join the show's waiting list."""
    reservation = _reservation(uow, cmd.reservation_id)
    waiting_id = WaitingList.create_id(reservation.show_id)
    waiting = uow.find(WaitingList, waiting_id)
    if waiting is None:
        waiting = WaitingList(show_id=reservation.show_id)
        uow.add(waiting)
    waiting.join(reservation.reservation_id, reservation.seats)
    reservation.waitlist()


def expire_reservation(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Release the seats and expire."""
    reservation = _reservation(uow, cmd.reservation_id)
    _show(uow, reservation).release_seats(reservation.reservation_id)
    reservation.expire()


def refund_payment(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Refund a captured payment (a late one, after expiry or cancellation)."""
    _refund_if_captured(uow, cmd.reservation_id)


def promote_waiting_customers(uow: UnitOfWork, cmd: PromoteWaitingCustomers) -> None:
    """Offer free seats to everyone waiting for them, in order of arrival."""
    waiting = uow.find(WaitingList, WaitingList.create_id(cmd.show_id))
    if waiting is None:
        return
    show = uow.get(Show, Show.create_id(cmd.show_id))
    if show.cancelled:
        return
    available = list(show.available)
    while (reservation_id := waiting.first_fitting(available)) is not None:
        waiting.leave(reservation_id)
        reservation = _reservation(uow, reservation_id)
        if reservation.status == "waitlisted":
            reservation.offer()
            available = [seat for seat in available if seat not in reservation.seats]


def _refund_if_captured(uow: UnitOfWork, reservation_id: str) -> None:
    payment = uow.find(Payment, Payment.create_id(reservation_id))
    if payment is not None and payment.status == "captured":
        uow.services.payment_gateway.refund(payment.idempotency_key)
        payment.refund()


def present_reservation(reservation: Reservation) -> dict[str, Any]:
    """The client's view of a reservation."""
    return {
        "reservation_id": reservation.reservation_id,
        "show_id": reservation.show_id,
        "customer_id": reservation.customer_id,
        "seats": reservation.seats,
        "status": reservation.status,
        "reason": reservation.reason,
        "amount_cents": reservation.amount_cents,
        "saga_id": str(ReservationSaga.create_id(reservation.reservation_id)),
    }


def register(registry: CommandRegistry) -> None:
    """Add the reservation commands."""

    def target(c: Any) -> Any:
        return Reservation.create_id(c.reservation_id)

    def resource(c: Any) -> str:
        return f"/reservations/{c.reservation_id}"

    def spec(name: str, payload: type[Payload], handler: Any, **extra: Any) -> CommandSpec[Any]:
        return CommandSpec(
            name=name,
            payload=payload,
            handler=handler,
            target=target,
            resource=resource,
            present=present_reservation,
            **extra,
        )

    registry.register(
        spec(
            "PlaceReservation",
            PlaceReservation,
            place_reservation,
            creates=True,
            correlate=lambda c: ReservationSaga.create_id(c.reservation_id),
        )
    )
    registry.register(spec("CancelReservation", CancelReservation, cancel_reservation))
    registry.register(spec("ReserveSeats", ReservationStep, reserve_seats))
    registry.register(spec("ChargePayment", ReservationStep, charge_payment))
    registry.register(spec("ConfirmReservation", ReservationStep, confirm_reservation))
    registry.register(spec("RejectReservation", RejectReservation, reject_reservation))
    registry.register(spec("WaitlistReservation", ReservationStep, waitlist_reservation))
    registry.register(spec("ExpireReservation", ReservationStep, expire_reservation))
    registry.register(spec("RefundPayment", ReservationStep, refund_payment))
    registry.register(
        CommandSpec(
            name="PromoteWaitingCustomers",
            payload=PromoteWaitingCustomers,
            handler=promote_waiting_customers,
            target=lambda c: WaitingList.create_id(c.show_id),
            resource=lambda c: f"/shows/{c.show_id}",
        )
    )
