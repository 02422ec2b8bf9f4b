"""The reservation commands: placed and cancelled by customers, the rest by the saga."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from application.catalog import CommandCatalog, CommandSpec, Endpoint
from application.payloads import (
    UNIQUE_ITEMS,
    Payload,
    ResourceId,
    SeatLabel,
    Text100,
    Text200,
    distinct,
)
from application.unit_of_work import UnitOfWork
from domain.errors import ConflictError
from domain.payment import Payment
from domain.reservation import Reservation, ReservationStateError
from domain.reservation_saga import (
    CHARGE_PAYMENT,
    CONFIRM_RESERVATION,
    EXPIRE_RESERVATION,
    REJECT_RESERVATION,
    RESERVE_SEATS,
    ReservationSaga,
)
from domain.show import Show

PLACE_RESERVATION = "PlaceReservation"
CANCEL_RESERVATION = "CancelReservation"


class ReservationExistsError(ConflictError):
    """Raised when a reservation is placed with an id another reservation has."""


class PlaceReservation(Payload):
    """Reserve seats of a show for a customer, paying with a card token."""

    reservation_id: ResourceId
    show_id: ResourceId
    customer_id: Text100
    seats: Annotated[
        list[SeatLabel],
        Field(min_length=1, max_length=50, json_schema_extra=UNIQUE_ITEMS),
        AfterValidator(distinct),
    ]
    card_token: Text100


class CancelReservation(Payload):
    """Cancel a reservation: its seats are released and its payment refunded."""

    reservation_id: ResourceId
    reason: Text200 = "cancelled by the customer"


class ReservationStep(Payload):
    """A step the saga takes for one reservation."""

    reservation_id: ResourceId


class RejectReservation(ReservationStep):
    """Release the seats and reject (compensation)."""

    reason: str


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
            owner=uow.client,
        )
    )


def reserve_seats(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Hold the reservation's seats, or put it on the show's waiting list."""
    reservation = _reservation(uow, cmd.reservation_id)
    if reservation.status != "pending" or reservation.has_seats:
        raise ReservationStateError(f"reservation {cmd.reservation_id} is {reservation.status}")
    if _show(uow, reservation).reserve_or_wait(reservation.reservation_id, reservation.seats):
        reservation.hold_seats()
    else:
        reservation.waitlist()


def charge_payment(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Charge the card once (the gateway's idempotency key sees to that).

    A reservation that ended before its charge ran is not charged; an earlier attempt
    may still have reached the gateway before losing its save to the change that ended
    it, so whatever the gateway took under this reservation's key goes back.
    """
    reservation = _reservation(uow, cmd.reservation_id)
    gateway = uow.services.payment_gateway
    if reservation.payment is not None:
        return  # charged by an earlier delivery
    if not reservation.is_chargeable:
        if reservation.is_finished:
            _give_back_any_charge(uow, reservation)
        raise ReservationStateError(
            f"reservation {cmd.reservation_id} is {reservation.status}; not charged"
        )
    payment = uow.find(Payment, Payment.create_id(cmd.reservation_id))
    if payment is None:
        payment = Payment(
            reservation_id=cmd.reservation_id,
            amount_cents=reservation.amount_cents,
            card_token=reservation.card_token,
        )
        uow.add(payment)
    result = gateway.charge(payment.idempotency_key, payment.amount_cents, payment.card_token)
    if result.approved:
        payment.capture(result.reference or "")
        reservation.paid()
    else:
        reason = result.reason or "declined"
        payment.decline(reason)
        reservation.payment_declined(reason)


def refund_if_ended(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """After a charge attempt that could not record its outcome: it may have taken the
    money after another attempt found the reservation ended and refunded nothing, so
    if the reservation ended without a recorded payment, the money goes back."""
    reservation = _reservation(uow, cmd.reservation_id)
    if reservation.is_finished and reservation.payment != "captured":
        _give_back_any_charge(uow, reservation)


def _give_back_any_charge(uow: UnitOfWork, reservation: Reservation) -> None:
    """Refund whatever the gateway took under the reservation's key; nothing if nothing."""
    uow.services.payment_gateway.refund(Payment.idempotency_key_of(reservation.reservation_id))


def confirm_reservation(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Sell the held seats and confirm."""
    reservation = _reservation(uow, cmd.reservation_id)
    reservation.confirm()
    _show(uow, reservation).sell_seats(reservation.reservation_id)


def cancel_reservation(uow: UnitOfWork, cmd: CancelReservation) -> None:
    """Cancel, release the seats or leave the waiting list, refund a captured payment."""
    reservation = _reservation(uow, cmd.reservation_id)
    reservation.cancel(cmd.reason)
    _settle_ended(uow, reservation)


def reject_reservation(uow: UnitOfWork, cmd: RejectReservation) -> None:
    """Release the seats and reject."""
    reservation = _reservation(uow, cmd.reservation_id)
    reservation.reject(cmd.reason)
    _settle_ended(uow, reservation)


def expire_reservation(uow: UnitOfWork, cmd: ReservationStep) -> None:
    """Release the seats and expire."""
    reservation = _reservation(uow, cmd.reservation_id)
    reservation.expire()
    _settle_ended(uow, reservation)


def _settle_ended(uow: UnitOfWork, reservation: Reservation) -> None:
    """What ending a reservation short of use calls for, in the same save as the end.

    Its seats are released and offered at once to those waiting for them (their
    reservations are written too), it leaves the waiting list, and a captured payment
    is refunded. Every command that changes the reservation or the show writes one of
    them, so a racing charge, hold or join is ordered before or after this, never lost.

    Whatever the gateway holds under the reservation's key goes back even with no
    captured payment recorded: a charge may have reached the gateway and then lost its
    worker for good (its command dead-lettered), leaving money the reservation never
    learnt of. A refund of a key never charged does nothing.
    """
    show = _show(uow, reservation)
    show.leave_waiting_list(reservation.reservation_id)
    if show.release_seats(reservation.reservation_id):
        for offered in show.offer_free_seats():
            _reservation(uow, offered).offer()
    if reservation.payment == "captured":
        payment = uow.get(Payment, Payment.create_id(reservation.reservation_id))
        uow.services.payment_gateway.refund(payment.idempotency_key)
        payment.refund()
        reservation.refunded()
    elif reservation.payment is None:
        _give_back_any_charge(uow, reservation)


def register(catalog: CommandCatalog) -> None:
    """Add the reservation commands."""

    def target(c: Any) -> Any:
        return Reservation.create_id(c.reservation_id)

    def spec(name: str, payload: type[Payload], handler: Any, **extra: Any) -> CommandSpec[Any]:
        return CommandSpec(
            name=name,
            payload=payload,
            handler=handler,
            target=target,
            resource="/reservations/{reservation_id}",
            **extra,
        )

    catalog.register(
        spec(
            PLACE_RESERVATION,
            PlaceReservation,
            place_reservation,
            creates=True,
            correlate=lambda c: ReservationSaga.create_id(c.reservation_id),
            endpoint=Endpoint(
                "PUT", "/reservations/{reservation_id}", "Reserve seats (starts a saga)"
            ),
        )
    )
    catalog.register(
        spec(
            CANCEL_RESERVATION,
            CancelReservation,
            cancel_reservation,
            endpoint=Endpoint(
                "POST",
                "/reservations/{reservation_id}/cancel",
                "Cancel a reservation: release its seats, refund its payment",
            ),
        )
    )
    catalog.register(spec(RESERVE_SEATS, ReservationStep, reserve_seats))
    catalog.register(
        spec(CHARGE_PAYMENT, ReservationStep, charge_payment, after_lost=refund_if_ended)
    )
    catalog.register(spec(CONFIRM_RESERVATION, ReservationStep, confirm_reservation))
    catalog.register(spec(REJECT_RESERVATION, RejectReservation, reject_reservation))
    catalog.register(spec(EXPIRE_RESERVATION, ReservationStep, expire_reservation))
