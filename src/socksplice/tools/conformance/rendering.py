"""The suite's result as a terminal table, one JSON document, and docs/conformance.md.

Verdicts, per mode: the default mode (Auto) and DryRun must show no difference at all; in the
opt-in SpliceRelaxedReceive mode a difference is *documented* when it is one of ``KNOWN_CAUSES`` (a
property of the kernel's tcp_bpf receive path, docs/hazards.md); anything else is a regression.
Under SpliceRelaxedReceive the did-differ counters of each scenario's endpoints are shown beside
the comparison, with whether they agree with it (reported, never a failure).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from socksplice.api.socketsplice import Mode
from socksplice.tools.conformance.running import DEFAULT_MODE, Outcome

BACKPRESSURE_WAKEUP = (
    "tcp_bpf_recvmsg → tcp_msg_wait_data: once backpressure moved the socket's own sends to TCP, "
    "their ACKs and window updates wake its blocked reader without data, and the blocking recv "
    "returns -EAGAIN (seen when the peer reads slower than the sender writes)"
)
KNOWN_CAUSES: dict[str, str] = {  # SpliceRelaxedReceive only
    "shutwr-then-read": "tcp_bpf_recvmsg → tcp_msg_wait_data: one wakeup without data (the ACK of "
    "its own FIN) returns -EAGAIN from a blocking recv",
    "shutwr-slow-reply": "as shutwr-then-read",
    "rst-while-blocked": "tcp_bpf_recvmsg waits without checking sk_err: the RST's wakeup returns "
    "-EAGAIN, the error comes with the next call",
    "close-with-unread": "__tcp_close counts unread bytes in sk_receive_queue only; redirected bytes "
    "wait in the psock's ingress_msg, so close sends FIN instead of RST",
    "msg-waitall": "sk_msg_recvmsg returns what the psock holds; MSG_WAITALL is not honoured",
    "so-rcvlowat": "tcp_bpf_recvmsg ignores SO_RCVLOWAT",
    "splice-to-pipe": "tcp_splice_read reads sk_receive_queue only; redirected bytes wait in the "
    "psock, invisible to splice(2), which makes no progress",
    "full-duplex": BACKPRESSURE_WAKEUP,
    "8mib-writes": BACKPRESSURE_WAKEUP,
    "slow-reader": BACKPRESSURE_WAKEUP,
    "stopped-reader": BACKPRESSURE_WAKEUP,
    "fionread": "kernels without tcp_bpf_ioctl (seen on Debian 6.1; 6.12 and 6.18 have it): "
    "FIONREAD/SIOCINQ goes to tcp_ioctl, which counts sk_receive_queue only, so redirected bytes "
    "read as 0",
}


def _short(value: Any, width: int = 48) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def verdict(o: Outcome) -> str:
    if o.failed:
        return "FAILED"
    return "same" if o.same else "DIFFERENT"


def documented(o: Outcome) -> bool:
    """A SpliceRelaxedReceive difference analysed in docs/hazards.md. The default mode has none."""
    return not o.same and not o.failed and o.mode is Mode.SPLICE and o.scenario.name in KNOWN_CAUSES


def differences(outcomes: Iterable[Outcome]) -> int:
    return sum(1 for o in outcomes if not o.same)


def cause(o: Outcome) -> str:
    """Why ``o`` differs: the kernel function responsible, or "not analysed" (a regression)."""
    if documented(o):
        return KNOWN_CAUSES[o.scenario.name]
    if o.audit_differs:
        return "not analysed: the evidence pass (audited, on TCP) differed from plain TCP"
    if o.unspliced_redirected:
        return f"not analysed: {o.redirected} bytes redirected although the endpoint was {o.verdict}"
    return "not analysed"


def undocumented(outcomes: Iterable[Outcome]) -> int:
    """Differences nobody has explained, any difference of the default mode, and scenarios that
    failed to run: regressions."""
    return sum(1 for o in outcomes if not o.same and not documented(o))


def by_mode(outcomes: Iterable[Outcome]) -> dict[Mode, list[Outcome]]:
    grouped: dict[Mode, list[Outcome]] = {}
    for o in outcomes:
        grouped.setdefault(o.mode, []).append(o)
    return grouped


def _client(trace: Any) -> Any:
    return trace.get("client") if isinstance(trace, dict) else trace


def _label(mode: Mode) -> str:
    if mode is DEFAULT_MODE:
        return f"{mode.value} (default)"
    return f"{mode.value} (opt-in)" if mode is Mode.SPLICE else mode.value


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "0"


def did_differ_cell(o: Outcome) -> str:
    """The did-differ counts and whether they agree with the comparison ("0, agrees")."""
    agrees = o.did_differ_agrees
    said = "n/a" if agrees is None else "agrees" if agrees else "DISAGREES"
    return f"{_counts(o.did_differ)}, {said}"


def disagreements(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """SpliceRelaxedReceive scenarios whose did-differ counters do not tell what the suite saw."""
    return [o for o in outcomes if o.mode is Mode.SPLICE and o.did_differ_agrees is False]


def _extra_header(mode: Mode) -> tuple[str, ...]:
    if mode is Mode.AUTO:
        return ("verdict", "reason")
    if mode is Mode.SPLICE:
        return ("did differ",)
    return ()


def _extra(o: Outcome) -> tuple[str, ...]:
    if o.mode is Mode.AUTO:
        after = "" if o.verdict_after in ("", o.verdict) else f" → {o.verdict_after}"
        return (o.verdict + after, o.reason)
    if o.mode is Mode.SPLICE:
        return (did_differ_cell(o),)
    return ()


def table(outcomes: list[Outcome]) -> str:
    lines: list[str] = []
    for mode, group in by_mode(outcomes).items():
        header = ("scenario", "same?", *_extra_header(mode), "paired", "redirected B", "plain client")
        rows = [(*header, f"{mode.value} client")]
        for o in group:
            rows.append(
                (
                    o.scenario.name,
                    verdict(o),
                    *(_short(cell, 40) for cell in _extra(o)),
                    str(o.paired),
                    str(o.redirected),
                    _short(_client(o.plain)),
                    _short(_client(o.spliced)),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines.append(f"== {_label(mode)}")
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.append(
            f"{differences(group)} difference(s) in {len(group)} scenario(s), "
            f"{undocumented(group)} not documented in docs/hazards.md\n"
        )
    return "\n".join(lines).rstrip()


def _scenario_doc(o: Outcome) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": o.scenario.name,
        "what": o.scenario.what,
        "address": o.scenario.address,
        "same": o.same,
        "documented": documented(o),
        "failed": o.failed,
        "pairedConnections": o.paired,
        "redirectedBytes": o.redirected,
        "leftInSockhash": o.left_in_map,
        "plain": o.plain,
        "spliced": o.spliced,
    }
    if o.mode is Mode.AUTO:
        doc.update(
            verdict=o.verdict,
            reason=o.reason,
            verdictAfter=o.verdict_after,
            audited=o.audited,
            auditedSame=not o.audit_differs,
        )
    if o.mode is not Mode.DRY_RUN:
        doc.update(didDiffer=o.did_differ, wouldDiffer=o.would_differ)
    if o.mode is Mode.SPLICE:
        doc["didDifferAgrees"] = o.did_differ_agrees
    if not o.same:
        doc["cause"] = cause(o)
    return doc


def document(outcomes: list[Outcome], data_path: dict[str, Any]) -> dict[str, Any]:
    """``differences`` is the default mode's count (the promise: 0); ``modes`` has every mode run."""
    grouped = by_mode(outcomes)
    return {
        "kernel": os.uname().release,
        "dataPath": data_path,
        "defaultMode": DEFAULT_MODE.value,
        "differences": differences(grouped.get(DEFAULT_MODE, [])),
        "undocumentedDifferences": undocumented(outcomes),
        "didDifferDisagreements": [o.scenario.name for o in disagreements(outcomes)],
        "modes": [
            {
                "mode": mode.value,
                "default": mode is DEFAULT_MODE,
                "differences": differences(group),
                "undocumentedDifferences": undocumented(group),
                "scenarios": [_scenario_doc(o) for o in group],
            }
            for mode, group in grouped.items()
        ],
    }


INTRO = """\
Each scenario ran between two local pods, once on plain TCP and then in each mode of a
SocketSplice selecting both pods; the traces (bytes and order, return value or errno of each
call, EOF, poll masks) are compared. `paired` counts the connections the data path paired
(spliced, or counted as spliceable in DryRun); `redirected` the bytes it redirected. Each
scenario listens on a port of its own, so that it is an endpoint of its own (Auto decides per
endpoint, and a refusal is final).

In Auto each scenario runs twice: an evidence pass, audited on TCP (its trace must equal plain
TCP too), then, once the node agent reached a verdict for the scenario's endpoints (at most
10 s), the measured pass whose trace is compared. `verdict` is the endpoints' verdict when the
measured pass started (→ the one after it, when it changed). The suite's SocketSplice sets
`auto: {evidenceWindow: {connections: 1, seconds: 1}, minMessagesPerConnection: 0}`: the window
is shortened so that one pass is evidence enough, and the cost rule is disabled so that every
scenario whose receive pattern tcp_bpf serves like TCP is spliced however few messages it
exchanges (a real workload with fewer than 4 messages per connection stays on TCP, where it
gains nothing). Blocking readers that wait are refused (Demoted) and stay on TCP.

Under SpliceRelaxedReceive `did differ` lists the did-differ counts of the scenario's endpoints
(an application got another result than TCP would give, as the data path counted it) and whether
they agree with the comparison (a difference should show a count, a same trace none); reported,
never a failure.
Causes and what socksplice does about them: [hazards.md](hazards.md).
"""


def _fails_on(mode: Mode) -> str:
    if mode is Mode.SPLICE:
        return ")."
    return ", and on any difference of this mode)."


def markdown(outcomes: list[Outcome], command: str) -> str:
    out = [
        "# Conformance: plain TCP vs each SocketSplice mode",
        "",
        f"Generated by `{command}` on Linux {os.uname().release}; do not edit by hand.",
        INTRO,
    ]
    for mode, group in by_mode(outcomes).items():
        header = ["scenario", "what the application does", "same?", *_extra_header(mode)]
        header += ["paired", "redirected", "plain", "this mode"]
        out += [
            f"## {_label(mode)}",
            "",
            f"**{differences(group)} difference(s)** in {len(group)} scenarios; "
            f"{undocumented(group)} not explained in hazards.md (the command fails on those"
            + _fails_on(mode),
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for o in group:
            cells = [
                o.scenario.name,
                o.scenario.what,
                verdict(o),
                *(cell.replace("|", "\\|") for cell in _extra(o)),
                str(o.paired),
                str(o.redirected),
                _md(_client(o.plain)),
                _md(_client(o.spliced)),
            ]
            out.append("| " + " | ".join(cells) + " |")
        diffs = [o for o in group if not o.same]
        if diffs:
            out += ["", f"Differences in {mode.value} and the kernel function responsible:", ""]
            out += [f"- **{o.scenario.name}**: {cause(o)}" for o in diffs]
        odd = disagreements(group)
        if odd:
            out += ["", "Did-differ counters that do not tell what the comparison saw:", ""]
            out += [
                f"- **{o.scenario.name}**: {verdict(o)}, did differ {_counts(o.did_differ)}"
                + (f", would differ {_counts(o.would_differ)}" if o.would_differ else "")
                for o in odd
            ]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _md(value: Any) -> str:
    return "`" + _short(value, 80).replace("|", "\\|") + "`"
