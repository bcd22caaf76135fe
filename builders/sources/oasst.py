"""OpenAssistant oasst1/oasst2: flat message exports, nested tree exports, or the Hub.

Each prompter turn becomes a prompt (earlier turns kept as chat context) from its `user_id`; ranked assistant
siblings become one ranking; the best-ranked reply (or a lone reply) becomes a demonstration. Deleted messages,
messages that failed review and everything below them are dropped with a counted reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

from builders.errors import InputError
from builders.readers import RawRecord, iter_records
from builders.sources import SourceData, local_path

ROLE = {"prompter": "user", "assistant": "assistant"}
RANKERS = "oasst_rankers"  # oasst rankings are a consensus of several users, not one labeler's


def _flatten_tree(node: dict, tree: dict, out: list[dict]) -> None:
    msg = {k: v for k, v in node.items() if k != "replies"}
    msg.setdefault("message_tree_id", tree.get("message_tree_id"))
    out.append(msg)
    for child in node.get("replies") or []:
        child = dict(child)
        child.setdefault("parent_id", node.get("message_id"))
        _flatten_tree(child, tree, out)


def iter_local_messages(path: Path, src: SourceData | None = None) -> Iterator[tuple[dict, str, int]]:
    """(message, file, line) for every message of a flat or nested export, one at a time. An unreadable line
    raises, or with `src` and on_error="skip" is dropped with its reason."""
    files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet", ".gz")) if path.is_dir() else [path]
    for file in files:
        for rec in iter_records(file):
            if rec.error:
                if src is None:
                    raise rec.error
                src.skip_or_raise(rec.error, f"{Path(rec.file).name}:{rec.line}")
                continue
            data = rec.data
            if "prompt" in data and isinstance(data["prompt"], dict):  # nested tree export
                flat: list[dict] = []
                _flatten_tree(data["prompt"], data, flat)
                yield from ((m, rec.file, rec.line) for m in flat)
            else:
                yield data, rec.file, rec.line


def local_messages(path: Path) -> list[tuple[dict, str, int]]:
    """Every message of a flat or nested export (small files: the taxonomy's held-out sets)."""
    return list(iter_local_messages(path))


def _hub_messages(hub_id: str) -> Iterator[tuple[dict, str, int]]:
    from datasets import load_dataset

    ds = load_dataset(hub_id)  # memory-mapped Arrow files: rows are read as they are iterated
    for split in sorted(ds):
        for i, row in enumerate(ds[split], start=1):
            yield row, f"{hub_id}[{split}]", i


def _trees(rows: Iterator[tuple[dict, str, int]], src: SourceData) -> Iterator[list[tuple[dict, str, int]]]:
    """The messages grouped by `message_tree_id`, one tree at a time (oasst's exports keep a tree's messages
    together). Messages without a tree id form one group with the messages around them. A message whose tree
    was already closed is an error: the export must keep each tree together."""
    closed: set = set()
    group: list[tuple[dict, str, int]] = []
    current = object()
    for m, file, line in rows:
        tree = m.get("message_tree_id") if isinstance(m, dict) else None
        if tree is not None and tree != current and group:
            yield group
            closed.add(current)
            group = []
        if tree is not None and tree in closed:
            err = InputError("this message's tree appeared earlier in the file, apart from it: an oasst export "
                             "must keep each tree's messages together", file=file, line=line, field="message_tree_id")
            raise err
        if tree is not None:
            current = tree
        group.append((m, file, line))
    if group:
        yield group


def read_oasst(spec: str, arg: str, on_error: str = "fail") -> SourceData:
    path = local_path(arg)

    def reader(src: SourceData) -> Iterator[RawRecord]:
        seen: set[str] = set()
        rows = iter_local_messages(path, src) if path is not None else _hub_messages(arg)
        any_message = False
        for tree in _trees(rows, src):
            any_message = True
            yield from _tree_records(tree, spec, src, seen)
        if not any_message:
            raise InputError("no messages", file=arg)

    return SourceData(spec, "messages", reader, license="apache-2.0", on_error=on_error)


def _tree_records(rows: list[tuple[dict, str, int]], spec: str, src: SourceData, seen: set[str]) -> Iterator[RawRecord]:
    """The records of one message tree; each message is counted once, as what it became or dropped with a reason."""
    msgs: dict[str, dict] = {}
    where: dict[str, tuple[str, int]] = {}
    for m, file, line in rows:
        try:
            for fld in ("message_id", "role", "text"):
                if m.get(fld) in (None, ""):
                    raise InputError("missing in an oasst message", file=file, line=line, field=fld)
            if m["role"] not in ROLE:
                raise InputError("unknown role", file=file, line=line, field="role", detail=repr(m["role"]))
            if m["message_id"] in seen:
                raise InputError("duplicate message_id", file=file, line=line, field="message_id", detail=repr(m["message_id"]))
        except InputError as err:
            src.skip_or_raise(err, str(m.get("message_id") or f"{Path(file).name}:{line}"))
            continue
        seen.add(m["message_id"])
        msgs[m["message_id"]] = m
        where[m["message_id"]] = (file, line)

    children: dict[str, list[str]] = defaultdict(list)
    for mid, m in msgs.items():
        if m.get("parent_id"):
            children[m["parent_id"]].append(mid)

    status: dict[str, str] = {}  # message id -> what it became, or "dropped:<reason>"

    def own_problem(m: dict) -> str | None:
        if m.get("deleted"):
            return "deleted"
        if m.get("review_result") is False:
            return "review_failed"
        return None

    # Walk top-down so a dropped message takes its subtree with it.
    def chain(mid: str) -> list[dict]:
        out = []
        while mid:
            m = msgs[mid]
            out.append(m)
            mid = m.get("parent_id")
        return out[::-1]

    ok: set[str] = set()
    order = sorted(msgs, key=lambda i: (where[i][0], where[i][1]))
    for mid in order:
        m = msgs[mid]
        parent = m.get("parent_id")
        if parent and parent not in msgs:
            reason = "parent_missing"
        else:
            reason = own_problem(m)
            if reason is None:
                for anc in chain(mid)[:-1]:
                    if own_problem(anc) or (anc.get("parent_id") and anc["parent_id"] not in msgs):
                        reason = "ancestor_dropped"
                        break
        if reason:
            status[mid] = "dropped"
            src.drop(mid, reason)
        else:
            ok.add(mid)

    for mid in order:
        m = msgs[mid]
        if mid not in ok or m["role"] != "prompter":
            continue
        file, line = where[mid]
        history = chain(mid)
        user_id = m.get("user_id") or f"tree:{m.get('message_tree_id') or history[0]['message_id']}"
        yield (
            RawRecord(
                {
                    "prompt_id": mid,
                    "user_id": user_id,
                    "source": "api",
                    "prompt_type": None,
                    "messages": [{"role": ROLE[h["role"]], "content": h["text"]} for h in history],
                    "created_at": m.get("created_date"),
                    "lang": m.get("lang"),
                },
                file, line, source=spec, kind="prompt",
            )
        )
        status[mid] = "prompt"
        replies = sorted((c for c in children.get(mid, []) if c in ok), key=lambda c: where[c])
        ranked = [c for c in replies if msgs[c].get("rank") is not None]
        if len(ranked) >= 2:
            yield (
                RawRecord(
                    {
                        "ranking_id": f"{mid}:ranking",
                        "prompt_id": mid,
                        "labeler_id": RANKERS,
                        "completions": [msgs[c]["text"] for c in ranked],
                        "ranks": [int(msgs[c]["rank"]) for c in ranked],
                    },
                    file, line, source=spec, kind="ranking",
                )
            )
            for c in ranked:
                status[c] = "ranking_completion"
            best = min(ranked, key=lambda c: (int(msgs[c]["rank"]), where[c]))
        elif len(replies) == 1:
            best = replies[0]
            status[best] = "demonstration"
        else:
            best = None
        if best is not None:
            b = msgs[best]
            bf, bl = where[best]
            yield (
                RawRecord(
                    {
                        "demonstration_id": f"{best}",
                        "prompt_id": mid,
                        "labeler_id": b.get("user_id") or RANKERS,
                        "completion": b["text"],
                    },
                    bf, bl, source=spec, kind="demonstration",
                )
            )
        for c in replies:
            if c not in status:
                status[c] = "dropped"
                src.drop(c, "unranked_reply" if ranked else "not_only_reply_and_unranked")
    for mid in ok:
        if mid not in status:  # assistant replies under dropped prompter turns cannot happen; be explicit anyway
            status[mid] = "dropped"
            src.drop(mid, "no_prompt_above")
    for what, n in Counter(s for s in status.values() if s != "dropped").items():
        src.became(what, n)
