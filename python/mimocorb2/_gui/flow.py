"""The data-flow tab: buffers (ellipses, roots blue) and workers (boxes) as a layered graph.

The layout is computed here (no graphviz needed): nodes are put in columns by their longest
path from the data entry points, and ordered within a column by the mean position of their
predecessors. The view updates live: the fill of every buffer, its rate, and the processes
alive of every worker (red when one failed).
"""

from __future__ import annotations

import math
from typing import Any

from mimocorb2._qt import QtCore, QtGui, QtWidgets

Node = tuple[str, str]  # ("b", buffer) or ("w", worker)

DX = 210.0
DY = 95.0
BUF_W, BUF_H = 150.0, 58.0
WRK_W, WRK_H = 160.0, 54.0

ROOT_COLOR = "#9ecae1"
BUFFER_COLOR = "#f0f0f0"
WORKER_COLOR = "#fdfdfd"
FILL_COLOR = "#1f77b4"
FAIL_COLOR = "#d62728"
ENDED_COLOR = "#bdbdbd"
MAX_ZOOM = 1.6


def edges(setup: dict[str, Any]) -> list[tuple[Node, Node, bool]]:
    """``(from, to, dotted)`` for every source, sink and observe connection."""
    out = []
    for name, w in setup["workers"].items():
        out += [(("b", b), ("w", name), False) for b in w["sources"]]
        out += [(("w", name), ("b", b), False) for b in w["sinks"]]
        out += [(("b", b), ("w", name), True) for b in w["observes"]]
    return out


def layout(setup: dict[str, Any]) -> dict[Node, tuple[float, float]]:
    """Positions (centre x, y) of every node."""
    nodes: list[Node] = [("b", b) for b in setup["buffers"]] + [("w", w) for w in setup["workers"]]
    es = [(a, b) for a, b, _ in edges(setup) if a in nodes and b in nodes]
    layer = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):  # longest path; bounded, so a cycle cannot loop forever
        changed = False
        for a, b in es:
            if layer[b] < layer[a] + 1:
                layer[b] = layer[a] + 1
                changed = True
        if not changed:
            break
    columns: dict[int, list[Node]] = {}
    for n in nodes:
        columns.setdefault(layer[n], []).append(n)
    preds: dict[Node, list[Node]] = {n: [] for n in nodes}
    for a, b in es:
        preds[b].append(a)
    pos: dict[Node, tuple[float, float]] = {}
    for col in sorted(columns):
        order = {n: i for i, n in enumerate(columns[col])}

        def key(n: Node, order: dict[Node, int] = order) -> float:
            ys = [pos[p][1] for p in preds[n] if p in pos]
            return sum(ys) / len(ys) if ys else order[n] * DY

        members = sorted(columns[col], key=key)
        for i, n in enumerate(members):
            pos[n] = (col * DX, (i - (len(members) - 1) / 2) * DY)
    return pos


def _color(name: str) -> QtGui.QColor:
    return QtGui.QColor(name)


class DataFlowView(QtWidgets.QGraphicsView):
    """The setup as a live graph."""

    def __init__(self, setup: dict[str, Any], parent: QtWidgets.QWidget | None = None) -> None:
        """Draws the graph of ``setup`` (the GUI's setup message)."""
        super().__init__(parent)
        self.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        self.setBackgroundBrush(QtGui.QBrush(QtCore.Qt.GlobalColor.white))
        self.scene_ = QtWidgets.QGraphicsScene(self)
        self.setScene(self.scene_)
        self.setup = setup
        self.roots = set(setup["roots"])
        self.pos = layout(setup)
        self.buffer_items: dict[str, dict[str, Any]] = {}
        self.worker_items: dict[str, dict[str, Any]] = {}
        self._draw()

    def _rect(self, node: Node) -> QtCore.QRectF:
        x, y = self.pos[node]
        w, h = (BUF_W, BUF_H) if node[0] == "b" else (WRK_W, WRK_H)
        return QtCore.QRectF(x - w / 2, y - h / 2, w, h)

    def _boundary(self, node: Node, toward: QtCore.QPointF) -> QtCore.QPointF:
        """Where the line from the node's centre towards ``toward`` leaves its shape."""
        r = self._rect(node)
        c = r.center()
        dx, dy = toward.x() - c.x(), toward.y() - c.y()
        if dx == 0 and dy == 0:
            return c
        a, b = r.width() / 2, r.height() / 2
        if node[0] == "b":  # ellipse
            t = 1.0 / math.sqrt((dx / a) ** 2 + (dy / b) ** 2)
        else:  # box
            t = min(a / abs(dx) if dx else math.inf, b / abs(dy) if dy else math.inf)
        return QtCore.QPointF(c.x() + t * dx, c.y() + t * dy)

    def _draw(self) -> None:
        s = self.scene_
        font = QtGui.QFont()
        font.setPointSizeF(9.5)
        small = QtGui.QFont(font)
        small.setPointSizeF(8.0)
        for a, b, dotted in edges(self.setup):
            if a not in self.pos or b not in self.pos:
                continue
            ca, cb = self._rect(a).center(), self._rect(b).center()
            p1, p2 = self._boundary(a, cb), self._boundary(b, ca)
            pen = QtGui.QPen(QtGui.QColor("#555555"), 1.4)
            if dotted:
                pen.setStyle(QtCore.Qt.PenStyle.DotLine)
            s.addLine(QtCore.QLineF(p1, p2), pen)
            ang = math.atan2(p2.y() - p1.y(), p2.x() - p1.x())
            head = QtGui.QPolygonF(
                [
                    p2,
                    QtCore.QPointF(
                        p2.x() - 10 * math.cos(ang - 0.4), p2.y() - 10 * math.sin(ang - 0.4)
                    ),
                    QtCore.QPointF(
                        p2.x() - 10 * math.cos(ang + 0.4), p2.y() - 10 * math.sin(ang + 0.4)
                    ),
                ]
            )
            s.addPolygon(head, QtGui.QPen(QtGui.QColor("#555555")), QtGui.QBrush(_color("#555555")))
        for name, info in self.setup["buffers"].items():
            r = self._rect(("b", name))
            fill = ROOT_COLOR if name in self.roots else BUFFER_COLOR
            shape = s.addEllipse(
                r, QtGui.QPen(QtGui.QColor("#333333"), 1.5), QtGui.QBrush(_color(fill))
            )
            label = s.addSimpleText(name, font)
            self._center(label, r.center().x(), r.top() + 10)
            bar_bg = s.addRect(
                QtCore.QRectF(r.center().x() - 45, r.center().y() - 3, 90, 7),
                QtGui.QPen(QtGui.QColor("#777777"), 0.8),
                QtGui.QBrush(QtCore.Qt.GlobalColor.white),
            )
            bar = s.addRect(
                QtCore.QRectF(r.center().x() - 45, r.center().y() - 3, 0, 7),
                QtGui.QPen(QtCore.Qt.PenStyle.NoPen),
                QtGui.QBrush(_color(FILL_COLOR)),
            )
            text = s.addSimpleText(f"{info['slot_count']} slots", small)
            self._center(text, r.center().x(), r.bottom() - 14)
            shape.setToolTip(f"buffer {name}: {info['slot_count']} slots")
            self.buffer_items[name] = {
                "shape": shape,
                "bar": bar,
                "bar_bg": bar_bg,
                "text": text,
                "base": fill,
            }
        for name, info in self.setup["workers"].items():
            r = self._rect(("w", name))
            shape = s.addRect(
                r, QtGui.QPen(QtGui.QColor("#333333"), 1.5), QtGui.QBrush(_color(WORKER_COLOR))
            )
            label = s.addSimpleText(name, font)
            self._center(label, r.center().x(), r.top() + 10)
            n = info["number_of_processes"]
            text = s.addSimpleText(f"{info['function']}  x{n}", small)
            self._center(text, r.center().x(), r.center().y() + 1)
            alive = s.addSimpleText(f"{n}/{n} alive", small)
            self._center(alive, r.center().x(), r.bottom() - 11)
            shape.setToolTip(f"worker {name}: {info['function']}, {n} process(es)")
            self.worker_items[name] = {"shape": shape, "alive": alive, "n": n}
        legend = s.addSimpleText(
            "ellipse: buffer (blue: root)   box: worker   dotted: observes", small
        )
        rect = s.itemsBoundingRect()
        legend.setPos(rect.left(), rect.bottom() + 12)
        legend.setBrush(QtGui.QBrush(QtGui.QColor("#666666")))

    @staticmethod
    def _center(item: QtWidgets.QGraphicsSimpleTextItem, x: float, y: float) -> None:
        br = item.boundingRect()
        item.setPos(x - br.width() / 2, y - br.height() / 2)

    def update_stats(self, stats: dict[str, Any], failed: dict[str, int]) -> None:
        """Shows the fill, rate and state of the buffers and the processes of the workers."""
        for name, items in self.buffer_items.items():
            b = stats.get("buffers", {}).get(name)
            if b is None:
                continue
            bg = items["bar_bg"].rect()
            frac = min(max(float(b.get("filled_slots", 0.0)), 0.0), 1.0)
            items["bar"].setRect(QtCore.QRectF(bg.left(), bg.top(), bg.width() * frac, bg.height()))
            state = (
                "ended"
                if b.get("flush_event_received")
                else ("paused" if b.get("paused") else f"{b.get('rate', 0.0):.0f} Hz")
            )
            cx = items["shape"].rect().center().x()
            items["text"].setText(f"{state} · {100 * frac:.0f}% full")
            self._center(items["text"], cx, items["shape"].rect().bottom() - 14)
            color = ENDED_COLOR if b.get("flush_event_received") else items["base"]
            items["shape"].setBrush(QtGui.QBrush(_color(color)))
        for name, items in self.worker_items.items():
            w = stats.get("workers", {}).get(name, {})
            alive = int(w.get("processes", 0))
            n_failed = failed.get(name, 0)
            text = f"{alive}/{items['n']} alive" + (f", {n_failed} failed" if n_failed else "")
            items["alive"].setText(text)
            cx = items["shape"].rect().center().x()
            self._center(items["alive"], cx, items["shape"].rect().bottom() - 11)
            pen = QtGui.QPen(_color(FAIL_COLOR if n_failed else "#333333"), 3 if n_failed else 1.5)
            items["shape"].setPen(pen)
            items["shape"].setBrush(QtGui.QBrush(_color(WORKER_COLOR if alive else ENDED_COLOR)))

    def fit(self) -> None:
        """Scales the graph to the view."""
        rect = self.scene_.itemsBoundingRect().adjusted(-20, -20, 20, 20)
        self.fitInView(rect, QtCore.Qt.AspectRatioMode.KeepAspectRatio)
        if self.transform().m11() > MAX_ZOOM:  # a small graph: do not blow the text up
            self.resetTransform()
            self.scale(MAX_ZOOM, MAX_ZOOM)
            self.centerOn(rect.center())

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt API
        """Keeps the graph fitted."""
        super().resizeEvent(event)
        self.fit()

    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802 - Qt API
        """Fits the graph when shown."""
        super().showEvent(event)
        self.fit()
