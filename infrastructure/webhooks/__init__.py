"""Signed webhooks: a command's terminal status, POSTed to its ``Callback-Url``.

Two steps, so that no receiver can hold up another:
1. :class:`WebhookDispatcher` follows terminal command events and writes each delivery
   to the ``webhook_deliveries`` outbox together with its tracked position (one
   transaction): it never waits for a receiver.
2. :class:`WebhookSender` threads claim due deliveries (``FOR UPDATE SKIP LOCKED``, a
   lease on each) and POST them, at most two at a time per destination, each with a
   time-out. A 2xx ends a delivery; anything else is retried with backoff, and after
   the last attempt the delivery is *parked*: kept, listed by ``GET /webhooks``, and no
   longer tried. A sender that dies mid-delivery leaves it to be claimed again after
   its lease, with the same ``Boxoffice-Delivery`` id, so receivers can drop a repeat.

Receivers are never on this side of the network: every address a URL's host resolves
to must be a global one (no loopback, private, link-local or metadata address) unless
its network is allow-listed (``WEBHOOK_ALLOW_NETWORKS``); the connection goes to the
address that was checked, and redirects are not followed.

Signature: ``Boxoffice-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``
keyed with ``WEBHOOK_SECRET``; receivers should reject old ``t`` values.
"""

from __future__ import annotations
