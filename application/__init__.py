"""The use cases: the generic command pipeline, its ports, and the command slices.

``pipeline``, ``command`` and ``catalog`` know no domain names; each slice
(``shows``, ``reservations``) registers its commands, and ``catalog`` lists the slices.
"""
