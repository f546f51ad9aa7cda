"""URL credentials kept out of everything shown or stored: messages, log lines, the manifest's
`source`, skipped-video reasons, plan.json and the dataset card all pass through `redact`.

`http://alice:secret@host/x` is shown as `http://alice:***@host/x`; a lone user part, which is often
a token (`https://ghp_xxx@host/`), as `https://***@host/`. Storage options (keys, secrets) are never
written anywhere; only URLs can carry a secret into text.
"""

from __future__ import annotations

import logging
import re

# scheme://user[:password]@ — user and password may not hold '/', '@' or whitespace (RFC 3986)
_USERINFO = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:]*)(?P<password>:[^/@\s]*)?@"
)
MASK = "***"


def _masked(match: re.Match[str]) -> str:
    if match.group("password") is None:
        return f"{match.group('scheme')}{MASK}@"
    return f"{match.group('scheme')}{match.group('user')}:{MASK}@"


def redact(text: str) -> str:
    """`text` with the password (or lone user part) of every URL in it replaced by ***."""
    if "@" not in text:
        return text
    return _USERINFO.sub(_masked, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URL credentials from each record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
