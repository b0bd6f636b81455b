#!/usr/bin/env python3
"""The shape of the production code, as issue 24 measures it (`make shape`).

Prints: production functions of 80 lines or more (the longest first), the biggest
production files, `pub` items per crate, and the DataJob reconcile's length.
Production code is every .rs file outside tests/, benches/ and fixtures, up to its
first `#[cfg(test)]` line (test modules sit at the end of a file).
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FN = re.compile(r'^\s*(pub(\([a-z:]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+([A-Za-z0-9_]+)')
PUB = re.compile(r'^\s*pub\s+(async\s+)?(fn|struct|enum|trait|const|static|type|mod|use)\b')
PUB_CRATE = re.compile(r'^\s*pub\((crate|super|in [^)]*)\)\s')


def production_files():
    for base, dirs, files in os.walk(ROOT):
        rel = os.path.relpath(base, ROOT)
        parts = rel.split(os.sep)
        if any(p in ('target', '.git', 'tests', 'benches', 'fixtures', 'e2e') for p in parts):
            dirs[:] = []
            continue
        for f in files:
            # Test modules in sibling files (`#[path = "x_tests.rs"]`), test fixtures and
            # the mocked API are tests too.
            if f.endswith('.rs') and not (f.endswith('_tests.rs') or f in ('tests.rs', 'fixtures.rs', 'mock.rs')):
                yield os.path.join(base, f)


def production_lines(path):
    out = []
    with open(path, encoding='utf-8') as fh:
        for line in fh:
            if line.strip().startswith('#[cfg(test)]'):
                break
            out.append(line)
    return out


def functions(lines):
    """(name, first line, length) of every fn with a body, by brace matching."""
    found = []
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        depth, opened = 0, False
        for j in range(i, len(lines)):
            text = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j].split('//')[0])
            text = re.sub(r"'(\\.|[^'\\])'", "''", text)
            for ch in text:
                if ch == '{':
                    depth += 1
                    opened = True
                elif ch == '}':
                    depth -= 1
            if not opened and text.rstrip().endswith(';'):
                break  # a declaration without a body
            if opened and depth <= 0:
                found.append((m.group(6), i + 1, j - i + 1))
                break
    return found


def justified(lines, first):
    """Whether the doc comment above the fn at line `first` says why it stays whole."""
    i = first - 2
    while i >= 0 and (lines[i].lstrip().startswith(('///', '#[', '//'))):
        if re.search(r'stays? whole|kept whole|keeps? it whole', lines[i].lower()):
            return True
        i -= 1
    return False


def crate_of(path):
    rel = os.path.relpath(path, ROOT).split(os.sep)
    if rel[0] == 'crates' and len(rel) > 1:
        return rel[1]
    return 'datajob'


def main():
    long_fns, sizes, pubs, reconcile = [], [], {}, None
    for path in sorted(production_files()):
        lines = production_lines(path)
        rel = os.path.relpath(path, ROOT)
        sizes.append((len(lines), rel))
        c = pubs.setdefault(crate_of(path), [0, 0])
        for line in lines:
            if PUB.match(line):
                c[0] += 1
            elif PUB_CRATE.match(line):
                c[1] += 1
        for name, first, n in functions(lines):
            if n >= 80:
                long_fns.append((n, f'{rel}:{first}', name, justified(lines, first)))
            if name == 'reconcile' and rel.replace(os.sep, '/').endswith('controller/datajob.rs') \
                    or name == 'reconcile' and rel.replace(os.sep, '/').endswith('controller/datajob/mod.rs'):
                reconcile = (n, f'{rel}:{first}')
    long_fns.sort(reverse=True)
    bare = sum(1 for f in long_fns if not f[3])
    print(f'production functions of 80 lines or more: {len(long_fns)} '
          f'({bare} without a comment that says why it stays whole)')
    print('| lines | function | where | says why whole |\n| ---: | --- | --- | --- |')
    for n, where, name, why in long_fns[: int(os.environ.get('SHAPE_TOP', '40'))]:
        print(f'| {n} | `{name}` | {where} | {"yes" if why else "no"} |')
    print('\nbiggest production files (lines before the test module)')
    print('| lines | file |\n| ---: | --- |')
    for n, rel in sorted(sizes, reverse=True)[:10]:
        print(f'| {n} | {rel} |')
    print('\npub items per crate')
    print('| crate | pub | pub(crate/super/in) |\n| --- | ---: | ---: |')
    for crate, (p, pc) in sorted(pubs.items()):
        print(f'| {crate} | {p} | {pc} |')
    if reconcile:
        print(f'\nthe DataJob reconcile: {reconcile[0]} lines ({reconcile[1]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
