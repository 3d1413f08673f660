"""mmd: a milter manager for Postfix on systemd hosts.

Folders say the architecture: ``protocol`` (the milter codec) and ``engine``
(session state machines) are pure and synchronous; ``adapters`` hold every
piece of I/O (asyncio sockets, systemd, D-Bus, journal); ``config``,
``conditions`` and ``detection`` decide which children a session gets; ``cli``
holds the user-facing commands.
"""

__version__ = "0.1.0"
