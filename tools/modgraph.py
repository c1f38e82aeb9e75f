#!/usr/bin/env python3
"""The crate's module-graph check: builds the file-level import graph of every file in src/ and
fails (exit 1) on an import circle or a broken layer rule. Run from the repository root:

    python3 tools/modgraph.py          # the graph, then the verdict
    python3 tools/modgraph.py --quiet  # the verdict only

An edge A -> B means a file A names something defined in file B: through a `use` path
(`crate::`, `super::`, `self::`, or a child module's name), a path expression in the code
(`super::entry::ShardRef::Batch`), or a name A re-exports and then uses itself. Names re-exported
by a module (`pub use child::X`, `pub use types::*`) are followed to the file that defines them,
and a re-export alone is not an import: a mod.rs that only declares and re-exports its children
does not import them. Test code is left out: files named tests.rs or under a tests/ directory,
and every item under `#[cfg(test)]`. main.rs is the binary crate; its `repcached::` paths count.

Reported, each making the exit status 1:
- circles between files (strongly connected components of the file graph);
- circles between sibling modules at any level (each directory's children, a directory
  collapsed into one node) that are not already circles between files;
- layer rules: protocol and store import nothing of server, replication or config, and not
  each other; replication imports nothing of server (LAYER_RULES below).
"""
import os
import re
import sys

SRC = 'src'
# top-level module -> top-level modules it must never import
LAYER_RULES = {
    'protocol': {'server', 'replication', 'config', 'store'},
    'store': {'server', 'replication', 'config', 'protocol'},
    'replication': {'server'},
}
IDENT = r'[A-Za-z_][A-Za-z0-9_]*'


def strip(src):
    """The source with comments, string and char literals blanked (line breaks kept)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i)
            j = n if j < 0 else j
            i = j
        elif src.startswith('/*', i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith('/*', j):
                    depth, j = depth + 1, j + 2
                elif src.startswith('*/', j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append('\n' * src.count('\n', i, j))
            i = j
        elif c == 'r' and re.match(r'r#*"', src[i:i + 10]) and (i == 0 or not re.match(r'\w', src[i - 1])) \
                or (c == 'b' and re.match(r'br#*"', src[i:i + 10]) and (i == 0 or not re.match(r'\w', src[i - 1]))):
            m = re.match(r'b?r(#*)"', src[i:])
            end = '"' + m.group(1)
            j = src.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + '\n' * src.count('\n', i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == '\\' else 1
            out.append('""' + '\n' * src.count('\n', i, j))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\(x..|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", src[i:i + 12])
            if m:
                out.append("' '")
                i += m.end()
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def item_end(code, i):
    """Where the item (or field, or statement) starting at `i` ends."""
    depth, n = 0, len(code)
    while i < n:
        c = code[i]
        if c in '{([':
            depth += 1
        elif c in '})]':
            if depth == 0:
                return i
            depth -= 1
            if depth == 0 and c == '}':
                rest = code[i + 1:].lstrip()
                # `} else {` / a struct literal followed by `,` or `;` go on
                if not rest.startswith(('else', ',', ';', '.', '?')):
                    return i + 1
        elif c in ';,' and depth == 0:
            return i + 1
        i += 1
    return n


def drop_test_items(code):
    out, i = [], 0
    for m in re.finditer(r'#\[cfg\(test\)\]', code):
        if m.start() < i:
            continue
        out.append(code[i:m.start()])
        j = m.end()
        while True:  # further attributes of the same item
            a = re.match(r'\s*#\[[^\]]*\]', code[j:])
            if not a:
                break
            j += a.end()
        e = item_end(code, j)
        out.append('\n' * code.count('\n', m.start(), e))
        i = e
    out.append(code[i:])
    return ''.join(out)


def parse_use_tree(s):
    """`a::b::{c, d::e as f, self}` -> [(segments, alias)] ('*' for globs)."""
    s = s.strip()
    res = []

    def split_top(t):
        parts, depth, cur = [], 0, ''
        for ch in t:
            if ch == '{':
                depth += 1
            elif ch == '}':
                depth -= 1
            if ch == ',' and depth == 0:
                parts.append(cur)
                cur = ''
            else:
                cur += ch
        parts.append(cur)
        return [p.strip() for p in parts if p.strip()]

    def walk(prefix, t):
        t = t.strip()
        if t.startswith('::'):
            t = t[2:]
        b = t.find('{')
        if b >= 0:
            head = [x for x in t[:b].split('::') if x.strip()]
            inner = t[b + 1:t.rfind('}')]
            for p in split_top(inner):
                walk(prefix + [h.strip() for h in head], p)
            return
        alias = None
        m = re.match(r'(.*?)\s+as\s+(' + IDENT + r')$', t)
        if m:
            t, alias = m.group(1), m.group(2)
        segs = [x.strip() for x in t.split('::') if x.strip()]
        if segs == ['self']:
            segs = []
        elif segs and segs[-1] == 'self':
            segs = segs[:-1]
        full = prefix + segs
        if not full:
            return
        if alias is None:
            alias = full[-1]
        res.append((full, alias))

    walk([], s)
    return res


class Module:
    def __init__(self, path, file):
        self.path = path  # tuple of segments
        self.file = file
        self.children = set()
        self.defined = set()
        self.reexports = {}  # alias -> segments (relative to this module)
        self.globs = []  # segments of `pub use x::*`
        self.uses = []  # (segments, alias) of private uses
        self.code = ''  # code outside use statements


def module_path(f):
    rel = os.path.relpath(f, SRC)[:-3].split(os.sep)
    if rel == ['lib']:
        return ()
    if rel == ['main']:
        return ('main',)
    if rel[-1] == 'mod':
        rel = rel[:-1]
    return tuple(rel)


def load():
    mods = {}
    for d, _, fs in os.walk(SRC):
        for f in sorted(fs):
            p = os.path.join(d, f)
            if not f.endswith('.rs') or f == 'tests.rs' or '/tests/' in p + '/' and \
                    os.sep + 'tests' + os.sep in os.path.relpath(p, SRC).join([os.sep, '']):
                continue
            if 'tests' in os.path.relpath(p, SRC).split(os.sep)[:-1]:
                continue
            mods[module_path(p)] = Module(module_path(p), p)
    for m in mods.values():
        code = drop_test_items(strip(open(m.file).read()))
        if m.path == ('main',):
            code = re.sub(r'\brepcached::', 'crate::', code)
        m.children = set(re.findall(r'\bmod\s+(' + IDENT + r')\s*;', code))
        m.defined = set(re.findall(
            r'\b(?:fn|struct|enum|trait|type|const|static|union|mod)\s+(' + IDENT + r')', code))
        m.defined |= set(re.findall(r'macro_rules!\s*(' + IDENT + r')', code))
        rest = []
        pos = 0
        for u in re.finditer(r'(\bpub(?:\s*\([^)]*\))?\s+)?\buse\s+([^;]*);', code):
            rest.append(code[pos:u.start()])
            rest.append('\n' * u.group(0).count('\n'))
            pos = u.end()
            for segs, alias in parse_use_tree(u.group(2)):
                if u.group(1):
                    if segs[-1] == '*':
                        m.globs.append(segs[:-1])
                    else:
                        m.reexports[alias] = segs
                else:
                    m.uses.append((segs, alias))
        rest.append(code[pos:])
        m.code = ''.join(rest)
    return mods


def resolve(mods, cur, segs, depth=0):
    """The module file that defines what `segs` names from module `cur`, or None (extern)."""
    if depth > 20 or not segs:
        return None
    m = mods.get(cur)
    head = segs[0]
    if head == 'crate':
        base, segs = (), segs[1:]
    elif head == 'super':
        base = cur
        while segs and segs[0] == 'super':
            base, segs = base[:-1], segs[1:]
    elif head == 'self':
        base, segs = cur, segs[1:]
    elif m and head in m.children:
        base = cur
    elif m and head in m.reexports:
        return resolve(mods, cur, m.reexports[head] + segs[1:], depth + 1)
    elif cur == () and head in mods.get((), Module((), '')).children:
        base = ()
    else:
        return None  # an extern crate, std, or a local name
    # walk down the modules
    mod = base
    while segs and mod + (segs[0],) in mods:
        mod, segs = mod + (segs[0],), segs[1:]
    if mod not in mods:
        return None
    target = mods[mod]
    if segs and segs[0] != '*' and segs[0] not in target.defined:
        name = segs[0]
        if name in target.reexports:
            return resolve(mods, mod, target.reexports[name] + segs[1:], depth + 1)
        # a name the module imported privately (visible to its children)
        for useg, alias in target.uses:
            if alias == name and useg[-1] != '*':
                r = resolve(mods, mod, useg + segs[1:], depth + 1)
                if r is not None:
                    return r
        for g in target.globs:
            r = resolve(mods, mod, g + segs, depth + 1)
            if r is not None:
                return r
    return mod


def build(mods):
    edges = {p: set() for p in mods}
    for p, m in mods.items():
        if p == ():
            continue  # lib.rs only declares the top modules
        refs = [segs for segs, _ in m.uses]
        for x in re.finditer(r'(?<![\w:.])((?:crate|super|self)(?:\s*::\s*' + IDENT + r')+)', m.code):
            refs.append([s.strip() for s in x.group(1).split('::')])
        local = m.children | set(m.reexports)
        for x in re.finditer(r'(?<![\w:.])(' + IDENT + r')\s*::\s*(' + IDENT + r')', m.code):
            if x.group(1) in local:
                refs.append([x.group(1), x.group(2)])
        # a name this file re-exports and uses itself
        for alias, segs in m.reexports.items():
            if re.search(r'(?<![\w:.])' + alias + r'\b', m.code):
                refs.append(segs)
        for segs in refs:
            t = resolve(mods, p, segs)
            if t is not None and t != p and t != ():
                edges[p].add(t)
    return edges


def sccs(nodes, edges):
    """Tarjan: the strongly connected components with more than one node."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def name(p, mods=None):
    if p == ():
        return 'lib.rs'
    return mods[p].file[len(SRC) + 1:] if mods and p in mods else '/'.join(p) + '/'


def main():
    quiet = '--quiet' in sys.argv
    mods = load()
    edges = build(mods)
    bad = 0
    if not quiet:
        for p in sorted(edges):
            if p == ():
                continue
            print(f'{name(p, mods)} -> ' + ', '.join(sorted(name(t, mods) for t in edges[p])))
        print()
    file_circles = sccs(list(edges), edges)
    for c in file_circles:
        bad += 1
        print('CIRCLE between files: ' + ' <-> '.join(name(p, mods) for p in c))
    # circles between sibling modules, each directory level
    file_sets = [set(c) for c in file_circles]
    parents = {p[:k] for p in mods for k in range(len(p))}
    for parent in sorted(parents):
        def child(p):
            if len(p) > len(parent) and p[:len(parent)] == parent:
                return p[:len(parent) + 1]
            return None
        sub = {}
        for a, ts in edges.items():
            ca = child(a) if a != parent else None
            for t in ts:
                ct = child(t) if t != parent else None
                if ca and ct and ca != ct:
                    sub.setdefault(ca, set()).add(ct)
        for c in sccs(list(sub), sub):
            if set(c) in file_sets and all(x in mods and not any(
                    y != x and y[:len(x)] == x for y in mods) for x in c):
                continue  # the same circle between files, reported above
            bad += 1
            print(f'CIRCLE between modules under {name(parent) if parent else "src/"}: '
                  + ' <-> '.join(name(x) if any(y != x and y[:len(x)] == x for y in mods)
                                 else name(x, mods) for x in c))
    for a, ts in sorted(edges.items()):
        if not a:
            continue
        for t in sorted(ts):
            if t and t[0] in LAYER_RULES.get(a[0], ()):
                bad += 1
                print(f'LAYER: {name(a, mods)} imports {name(t, mods)} '
                      f'({a[0]} never imports {t[0]})')
    nedges = sum(len(t) for t in edges.values())
    if bad:
        print(f'modgraph: {bad} violation(s) in {len(mods)} files, {nedges} imports')
        sys.exit(1)
    print(f'modgraph: OK: {len(mods)} files, {nedges} imports, no circle, layers kept')


if __name__ == '__main__':
    main()
