"""A deliberately changed saga rule, for replays: a declined payment expires the
reservation instead of rejecting it (``sagas replay --saga-class`` takes it too)."""

from __future__ import annotations

from domain.reservation_saga import EXPIRE_RESERVATION, ReservationSaga, SagaState


class DeclineExpiresSaga(ReservationSaga):
    """:class:`ReservationSaga` with one rule changed: a decline expires."""

    def payment_declined(self, reason: str) -> None:
        if self.state is SagaState.CHARGING:
            self._expiring(commands=[self._command(EXPIRE_RESERVATION, "expire")])


class BrokenSaga(ReservationSaga):
    """:class:`ReservationSaga` with a bug: a captured payment raises."""

    def payment_captured(self) -> None:
        raise RuntimeError("a bug in the fix")
