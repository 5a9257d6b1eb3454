"""The client ``ssl.SSLContext`` both drivers build from their TLS options.

Each driver maps its own option names and defaults onto this (libpq's
``sslmode``/``sslrootcert``/``sslcert`` for Postgres, redis-py's ``ssl_*`` for
Redis); what they share is here: TLS 1.2 at least, the checks asked for, root
certificates from a file or the system store, an optional client certificate,
and an :class:`~ringleader.drivers.errors.InterfaceError` (the driver's own
subclass, passed as ``error``) that names the option whose file could not be
loaded.  It
reads those files and does no other I/O.
"""
from __future__ import annotations

import ssl

from .errors import InterfaceError


def client_context(verify: ssl.VerifyMode, check_hostname: bool, cafile: str | None,
                   certfile: str | None = None, keyfile: str | None = None,
                   password: str | None = None, *, names=("cafile", "certfile", "keyfile"),
                   error: type[InterfaceError] = InterfaceError) -> ssl.SSLContext:
    """``cafile``: a file, ``"system"`` for the system store, or None (no
    roots).  ``names``: the caller's option names for cafile, certfile and
    keyfile, used in the error messages.  ``error``: the class raised for a
    file that cannot be loaded (a subclass of the shared InterfaceError)."""
    ca_name, cert_name, key_name = names
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # PostgreSQL's and Redis's default floor too
    # check_hostname first: CERT_NONE is refused while it is on.
    ctx.check_hostname = check_hostname
    ctx.verify_mode = verify
    if cafile is not None:
        try:
            if cafile == "system":
                ctx.load_default_certs()
            else:
                ctx.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError) as e:
            raise error(f"cannot load {ca_name} {cafile!r}: {e}") from None
    if certfile is not None:
        try:
            ctx.load_cert_chain(certfile, keyfile, password)
        except (OSError, ssl.SSLError) as e:
            raise error(f"cannot load {cert_name} {certfile!r} / {key_name} {keyfile!r}: "
                             f"{e}") from None
    elif keyfile is not None:
        raise error(f"{key_name} given without {cert_name}")
    return ctx
