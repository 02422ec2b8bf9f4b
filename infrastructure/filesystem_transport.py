"""kombu's server-less filesystem transport, made safe across processes.

The stock transport creates a message's ``.msg`` file and then writes into it, so a
consumer polling the folder can take the file in between and read it empty: the
worker then died on the JSON error and the message was gone (issue seen at about 60
requests/s). Here a message is written under a name no consumer picks up and renamed
into place once complete (a rename within a folder is atomic), and a message that
still cannot be read is logged and dropped instead of ending the worker. Nothing is
lost for good either way: the event log is the truth, and the stranded-command sweeper
publishes again any command that has no live attempt past its lease.
"""

from __future__ import annotations

import logging
import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    """Writes each message whole before it appears; skips one that cannot be read."""

    # kombu's own classes disagree on this signature; this one is the filesystem's.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        # A leading dot: the consumer only takes files named "<stamp>.<queue>.msg".
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        with open(partial, "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, os.path.join(self.data_folder_out, name))

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        while True:
            try:
                return super()._get(queue)
            except ValueError as error:  # the JSON decoder's errors are ValueErrors
                logger.error("dropped an unreadable message from queue %s: %s", queue, error)


class Transport(filesystem.Transport):
    """The filesystem transport with :class:`Channel`."""

    Channel = Channel
