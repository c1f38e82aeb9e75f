#!/usr/bin/env python3
"""File and function sizes of src/: prints the module tree with each file's line count, then
every file over MAX_FILE lines and every function over MAX_FN lines, and exits 1 if there is
any. Test code is not held to the limits: files named tests.rs or under a tests/ directory are
listed but not checked. A function's length runs from its `fn` line to its closing brace
(comments and string literals do not count as braces). Run from the repository root:

    python3 tools/sizes.py
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from modgraph import strip  # noqa: E402  (comments and literals blanked, lines kept)

SRC = 'src'
MAX_FILE = 700
MAX_FN = 150
FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?((const|async|unsafe|extern\s+"C")\s+)*fn\s+(\w+)')


def is_test(path):
    rel = os.path.relpath(path, SRC).split(os.sep)
    return rel[-1] == 'tests.rs' or 'tests' in rel[:-1]


def long_functions(path):
    raw = open(path).read().split('\n')
    code = strip(open(path).read()).split('\n')
    out = []
    for i, line in enumerate(raw):
        m = FN.match(code[i]) if i < len(code) else None
        if not m:
            continue
        depth, started, j = 0, False, i
        while j < len(code):
            for ch in code[j]:
                if ch == '{':
                    depth += 1
                    started = True
                elif ch == '}':
                    depth -= 1
            if started and depth <= 0:
                break
            if not started and code[j].rstrip().endswith(';'):
                break
            j += 1
        if j - i + 1 > MAX_FN:
            out.append((j - i + 1, i + 1, m.group(5)))
    return out


def main():
    files = []
    for d, dirs, fs in os.walk(SRC):
        dirs.sort()
        files += [os.path.join(d, f) for f in sorted(fs) if f.endswith('.rs')]
    files.sort(key=lambda p: os.path.relpath(p, SRC).split(os.sep))
    violations = []
    print(f'{"module tree (lines; * over the limit, t test code)":<52}{"lines":>7}')
    shown_dirs = set()
    total = 0
    for f in files:
        rel = os.path.relpath(f, SRC).split(os.sep)
        for k in range(1, len(rel)):
            d = tuple(rel[:k])
            if d not in shown_dirs:
                shown_dirs.add(d)
                print('  ' * k + rel[k - 1] + '/')
        n = open(f).read().count('\n')
        total += n
        mark = ''
        if is_test(f):
            mark = ' t'
        else:
            if n > MAX_FILE:
                violations.append(f'file {f}: {n} lines (limit {MAX_FILE})')
                mark = ' *'
            for length, line, name in long_functions(f):
                violations.append(f'fn   {f}:{line} {name}: {length} lines (limit {MAX_FN})')
                mark = ' *'
        print(f'{"  " * len(rel) + rel[-1]:<52}{n:>7}{mark}')
    print(f'{"total":<52}{total:>7}')
    if violations:
        print(f'\nsizes: {len(violations)} over the limits:')
        for v in violations:
            print('  ' + v)
        sys.exit(1)
    print(f'\nsizes: OK: no file over {MAX_FILE} lines, no function over {MAX_FN} lines')


if __name__ == '__main__':
    main()
