"""Marketing consent: opt-out and opt-in keywords in inbound messages, in many languages."""

from __future__ import annotations

import re
import unicodedata

OPT_OUT = frozenset(
    {
        "stop",
        "stopall",
        "unsubscribe",
        "cancel",
        "end",
        "quit",
        "optout",
        "opt-out",
        "remove",  # en
        "arret",
        "arreter",
        "stop sms",
        "desabonner",  # fr
        "stopp",
        "abmelden",
        "abbestellen",  # de
        "baja",
        "parar",
        "alto",
        "cancelar",  # es / pt
        "sair",
        "cancelar sms",  # pt
        "annulla",
        "disiscrivi",  # it
        "afmelden",  # nl
        "berhenti",
        "unreg",  # id / ms
        "td",
        "退订",
        "取消",
        "退訂",  # zh
        "停止",
        "配信停止",  # ja
        "거부",
        "수신거부",  # ko
        "توقف",
        "الغاء",  # ar
        "hayir",
        "iptal",  # tr
    }
)
OPT_IN = frozenset({"start", "unstop", "yes", "subscribe", "optin", "opt-in"})

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.strip().lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _SPACE.sub(" ", text.strip(" .!¡¿?\"'"))


def keyword(text: str) -> str | None:
    """'opt_out' / 'opt_in' when the whole message (or its first word) is such a keyword, else None."""
    norm = normalise(text)
    first = norm.split(" ", 1)[0] if norm else ""
    if norm in OPT_OUT or first in OPT_OUT:
        return "opt_out"
    if norm in OPT_IN or first in OPT_IN:
        return "opt_in"
    return None
