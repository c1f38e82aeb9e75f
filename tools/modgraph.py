#!/usr/bin/env python3
"""Prints the file-level import graph of src/protocol, src/server and src/numbers.rs (from the
use crate::/use super:: lines, test modules excluded) and any pair of files importing each
other. Run from the repository root: python3 tools/modgraph.py"""
import re,os,sys
# file-level import graph inside src/protocol, src/server, src/numbers.rs
files=[]
for root in ['src/protocol','src/server']:
    for d,_,fs in os.walk(root):
        for f in fs:
            if f.endswith('.rs'): files.append(os.path.join(d,f))
files.append('src/numbers.rs')
def modpath(f):
    p=f[4:-3].split('/')
    if p[-1]=='mod': p=p[:-1]
    if p[-1]=='tests' : return None
    return p
mods={tuple(modpath(f)):f for f in files if modpath(f)}
def resolve(cur, path):
    # cur: module path list of file; path: list of segments
    if path[0]=='crate': base=[]; path=path[1:]
    elif path[0]=='super':
        base=list(cur)
        while path and path[0]=='super': base=base[:-1]; path=path[1:]
    elif path[0]=='self': base=list(cur); path=path[1:]
    else: return None
    full=base+path
    # longest prefix that is a module file
    for n in range(len(full),0,-1):
        if tuple(full[:n]) in mods: return tuple(full[:n]), full[n:]
    return None
edges={}
for m,f in mods.items():
    src=open(f).read()
    # drop test module contents
    src=src.split('#[cfg(test)]')[0]
    deps=set()
    for u in re.findall(r'\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)(?:::\{([^;]*?)\})?',src,re.S):
        base=u[0].split('::')
        items=[base]
        if u[1]:
            items=[base+[x.strip().split(' ')[0].split('::')[0]] for x in u[1].split(',') if x.strip() and x.strip()!='self']
            items.append(base)
        for it in items:
            r=resolve(list(m),it)
            if not r: continue
            tgt,rest=r
            # if the target is a module file (mod.rs) and rest names a submodule, go deeper handled by longest prefix
            if tgt!=m and not (len(tgt)<len(m) and m[:len(tgt)]==tgt and not rest): 
                deps.add(tgt)
    edges[m]=deps
# declarations: parent mod.rs "use child::x" counts; a child using an item re-exported by parent counts too
cyc=[(a,b) for a in edges for b in edges[a] if a in edges.get(b,())]
for a in sorted(edges):
    print('/'.join(a), '->', ', '.join(sorted('/'.join(b) for b in edges[a])))
print('MUTUAL:',cyc)
