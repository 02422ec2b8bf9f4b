"""The ``boxoffice`` command line: one sub-command per long-running part, plus tooling."""
