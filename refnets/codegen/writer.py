"""Python source text already in `ruff format` (black) style, for the few shapes of
statement the emitters write: `target = call(...)`, `return expr`, calls nested in
calls, bracketed literals. A statement that does not fit in 88 columns is split
at its last bracket (its contents on one indented line), and if those do not fit
either, one item per line with a trailing comma, recursively (black's
right-hand split).

This module imports no framework.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import List, Sequence, Union

WIDTH = 88


@dataclass
class Call:
    """`func(items...)`; an item is a string (already rendered) or a nested Call /
    Brackets; keyword arguments are items of the form "name=value" or Kw."""

    func: str
    items: Sequence["Expr"]
    open: str = "("
    close: str = ")"
    explode: bool = False  # one item per line (a table), with a trailing comma


@dataclass
class Kw:
    name: str
    value: "Expr"


Expr = Union[str, Call, Kw]


def call(func: str, *args, **kwargs) -> Call:
    return Call(func, list(args) + [Kw(k, v) for k, v in kwargs.items()])


def brackets(open_: str, items, close: str, explode: bool = False) -> Call:
    return Call("", list(items), open_, close, explode)


def flat(expr: Expr) -> str:
    if isinstance(expr, str):
        return expr
    if isinstance(expr, Kw):
        return f"{expr.name}={flat(expr.value)}"
    inner = ", ".join(flat(i) for i in expr.items)
    if expr.open == "(" and not expr.func and len(expr.items) == 1:
        inner += ","  # a one-tuple
    return f"{expr.func}{expr.open}{inner}{expr.close}"


def lines(prefix: str, expr: Expr, suffix: str = "", indent: int = 0) -> List[str]:
    """`prefix + expr + suffix` at `indent` spaces, split as ruff format would."""
    pad = " " * indent
    one = f"{pad}{prefix}{flat(expr)}{suffix}"
    if isinstance(expr, Kw):
        return lines(f"{prefix}{expr.name}=", expr.value, suffix, indent)
    if not isinstance(expr, Call) or (len(one) <= WIDTH and not expr.explode) or not expr.items:
        return [one]
    head = f"{pad}{prefix}{expr.func}{expr.open}"
    tail = f"{pad}{expr.close}{suffix}"
    body = ", ".join(flat(i) for i in expr.items)
    if not expr.explode and len(body) + indent + 4 <= WIDTH:
        return [head, f"{pad}    {body}", tail]
    out = [head]
    for item in expr.items:
        out += lines("", item, ",", indent + 4)
    return out + [tail]


class Source:
    """Lines of a module, with the blank-line rules of ruff format between
    top-level definitions (two) and methods (one)."""

    def __init__(self):
        self.out: List[str] = []

    def add(self, text: str = "", indent: int = 0) -> None:
        for line in text.split("\n") if text else [""]:
            self.out.append((" " * indent + line) if line else "")

    def stmt(self, prefix: str, expr: Expr, indent: int, suffix: str = "") -> None:
        self.out += lines(prefix, expr, suffix, indent)

    def blank(self, count: int = 1) -> None:
        while self.out and self.out[-1] == "":
            self.out.pop()
        self.out += [""] * count

    def docstring(self, text: str, indent: int) -> None:
        """A triple-quoted docstring wrapped to the width: paragraphs, "- " bullet
        lists (after an optional heading line) and verbatim blocks (indented)."""
        pad, width = " " * indent, WIDTH - indent
        body: List[str] = []
        for para in (p.rstrip() for p in text.strip().split("\n\n")):
            if body:
                body.append("")
            if para.startswith("    "):
                body += para.split("\n")
                continue
            chunks = para.split("\n- ")
            first = '"""' if not body else ""
            if not chunks[0].startswith("- "):
                body += textwrap.wrap(chunks[0].replace("\n", " "), width, initial_indent=first,
                                      break_on_hyphens=False)
                chunks, first = chunks[1:], ""
            for item in chunks:
                item = item.removeprefix("- ").replace("\n", " ")
                body += textwrap.wrap(item, width, initial_indent=first + "- ", subsequent_indent="  ",
                                      break_on_hyphens=False)
                first = ""
        if len(body) == 1:  # ruff format joins the closing quotes to a single line
            self.out.append(f'{pad}{body[0]}"""')
            return
        self.out += [f"{pad}{b}" if b else "" for b in body] + [f'{pad}"""']

    def text(self) -> str:
        self.blank(0)
        return "\n".join(self.out) + "\n"


def string(value: str) -> str:
    """A double-quoted Python string literal (ruff format's quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value) -> str:
    if isinstance(value, str):
        return string(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)
