"""What both readers of other tools' telemetry (Prometheus, Telegraf in InfluxDB) share: turning a source
series' labels into fleetwise tags through a View, and combining the pieces several views or series give
for one output row."""

from __future__ import annotations

import re

from agents.schema.equivalents import View

_PORT = re.compile(r"^(.*?)(:\d+)?$")


def strip_port(value: str) -> str:
    if value.startswith("["):  # [ipv6]:port
        return value.split("]", 1)[0] + "]"
    return _PORT.match(value).group(1)


def tag_value(view: View, tag: str, labels: dict) -> str:
    """The fleetwise tag of one series from its labels (see tag_column)."""
    src = dict(view.tags).get(tag)
    if src is None:
        return ""
    if src.startswith("="):
        return src[1:]
    value = labels.get(src.removesuffix(":host"), "")
    return strip_port(value) if src.endswith(":host") else value


def view_tag_filter(view: View, where_tags) -> list[tuple[str, bool, tuple[str, ...]]] | None:
    """A query's where_tags ((tag, values), ...) through one view: (source label, whether the label is
    host:port to strip, values) per tag read from a label, or None when no series of the view can match (a
    constant tag, or a tag the view lacks and so reports as "", outside the values)."""
    tags = dict(view.tags)
    out = []
    for tag, values in where_tags:
        src = tags.get(tag)
        if src is None or src.startswith("="):
            if (src[1:] if src else "") not in values:
                return None
            continue
        out.append((src.removesuffix(":host"), src.endswith(":host"), values))
    return out


def tag_column(view: View, tag: str, labels_frame):
    import numpy as np

    src = dict(view.tags).get(tag)
    n = len(labels_frame)
    if src is None:
        return np.full(n, "", dtype=object)
    if src.startswith("="):
        return np.full(n, src[1:], dtype=object)
    col = labels_frame[src.removesuffix(":host")].fillna("").astype(str).to_numpy(object)
    if src.endswith(":host"):
        col = np.asarray([strip_port(v) for v in col], dtype=object)
    return col


def combine(pieces: list, keys: list[str], name: str):
    """One value per key from the pieces of several views (and of one view whose tags map several label
    sets onto one key): means from sums and counts, extremes as extremes, counts and sums added."""
    import pandas as pd

    pieces = [p for p in pieces if p is not None and len(p)]
    if not pieces:
        return pd.DataFrame(columns=[*keys, "v"])
    f = pd.concat(pieces, ignore_index=True)
    f["v"] = f["v"].astype(float)
    f["n"] = pd.to_numeric(f["n"], errors="coerce").astype(float)
    if name == "raw":
        return f.drop(columns="n")
    if not keys:
        f = f.assign(_k=0)
        keys = ["_k"]
    g = f.groupby(keys, sort=False)
    if name == "mean":
        out = (g["v"].sum(min_count=1) / g["n"].sum(min_count=1)).rename("v").reset_index()
    elif name in ("count", "sum"):
        out = g["v"].sum(min_count=1).reset_index()
    elif name in ("max", "last_time"):
        out = g["v"].max().reset_index()
    elif name in ("min", "first_time"):
        out = g["v"].min().reset_index()
    else:
        out = g["v"].first().reset_index()
    return out.drop(columns=["_k"], errors="ignore")
