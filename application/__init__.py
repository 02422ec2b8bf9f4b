"""The generic command pipeline, its ports, and the domain's command handlers.

``application.pipeline`` and ``application.command`` know no domain names; the domain's
commands are registered in ``application.commands``.
"""
