"""The documentation holds together: every relative link in README.md and docs/**/*.md points at
a file (and, for ``#anchor``, a heading) that exists, the README stays a manual (≤ 300 lines) and
never points at ``runs/`` (ignored by git: a reader who clones cannot see it).

Anchors follow GitHub's rule: the heading text lower-cased, characters other than letters,
digits, ``-``, ``_`` and spaces dropped, spaces turned into ``-``; a repeated heading gets
``-1``, ``-2``, …
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / 'README.md'
README_MAX_LINES = 300

LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
CODE_SPAN = re.compile(r'`+[^`]*`+')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')


def doc_files() -> list[Path]:
    return [README, *sorted((REPO / 'docs').rglob('*.md'))]


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) outside fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
        if line.lstrip().startswith(('```', '~~~')):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line))
    return out


def slug(heading: str) -> str:
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link in a heading: its text
    text = re.sub(r'[^\w\- ]', '', text.strip().lower())
    return text.replace(' ', '-')


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        k = seen.get(base, 0)
        seen[base] = k + 1
        out.add(base if k == 0 else f'{base}-{k}')
    return out


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for n, line in prose_lines(path):
        # inline code may hold brackets; a link's text may be code: keep a placeholder
        for target in LINK.findall(CODE_SPAN.sub('code', line)):
            if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:, …
                continue
            out.append((n, target))
    return out


@pytest.mark.parametrize('path', doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    broken = []
    for n, target in links(path):
        file_part, _, anchor = target.partition('#')
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f'{path.relative_to(REPO)}:{n}: {target}'
        if not dest.exists():
            broken.append(f'{where} (no such file)')
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            broken.append(f'{where} (no heading with that anchor)')
    assert not broken, 'broken links:\n' + '\n'.join(broken)


def test_readme_is_a_manual_of_at_most_300_lines():
    n = len(README.read_text(encoding='utf-8').splitlines())
    assert n <= README_MAX_LINES, (
        f'README.md has {n} lines (limit {README_MAX_LINES}): move detail to docs/'
    )


def test_readme_does_not_point_at_runs():
    hits = [
        f'README.md:{n}: {line.strip()}'
        for n, line in enumerate(README.read_text(encoding='utf-8').splitlines(), 1)
        if re.search(r'(?<![\w/.-])runs/', line)
    ]
    assert not hits, 'README points at runs/ (ignored by git):\n' + '\n'.join(hits)


def test_slug_follows_github():
    assert (
        slug('`vsda eval`: strategies × weathers → report and plots')
        == 'vsda-eval-strategies--weathers--report-and-plots'
    )
    assert slug('How much i.i.d. weather can give at all') == 'how-much-iid-weather-can-give-at-all'
    assert (
        slug('Fusion against per_frame (the shipped block, all three models)')
        == 'fusion-against-per_frame-the-shipped-block-all-three-models'
    )
