"""Markdown to a standalone HTML page, for the subset render.py writes.

That subset is headings, paragraphs, bullet lists, pipe tables, images on their own line, and
inline **bold** and `code`; writing it here avoids a Markdown dependency for one page.
"""
from __future__ import annotations

import html
import re

STYLE = ("body{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em;line-height:1.45}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
         "th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2em}img{max-width:100%}")
IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")


def inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    head = "".join(f"<th>{inline(c)}</th>" for c in _cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(line)) + "</tr>" for line in lines[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _block(lines: list[str]) -> str:
    first = lines[0]
    if first.startswith("#"):
        level = len(first) - len(first.lstrip("#"))
        return f"<h{level}>{inline(first[level:].strip())}</h{level}>"
    if first.startswith("|"):
        return _table(lines)
    if first.startswith("- "):
        return "<ul>" + "".join(f"<li>{inline(line[2:])}</li>" for line in lines) + "</ul>"
    image = IMAGE.match(first)
    if image and len(lines) == 1:
        return (f'<p><img src="{html.escape(image["src"])}" alt="{html.escape(image["alt"])}"></p>')
    return f"<p>{inline(' '.join(lines))}</p>"


def to_html(markdown: str, title: str) -> str:
    blocks, current = [], []
    for line in markdown.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    body = "\n".join(_block(block) for block in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
