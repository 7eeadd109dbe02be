# Exhaustive model of the reader role's hold on the inbound ring (InboundChannel.TryTakeReaderRole and its release,
# after d24c37b), written by the second review of session 2026-12-04 10:11. Every interleaving of one Dispose and
# T takers, each taking and releasing the role ITER times, under sequential consistency (every store-then-load pair in
# the protocol is separated by a full fence: the role's CAS, Dispose's exchange, the release's locked increment).
# It reports states where a holder that found the ring open still holds the role after the role's reference was given
# back (violations), and end states where it was never given back (leaks).
#
#   python3 tools/models/reader-role-model.py 3 3     # 0 violations, 0 leaks (~295k states)
#
# With the release's look at the role removed (the bug the first review found: `if d==1 and r==0` -> `if d==1`),
# it reports violations. A model of the protocol, not of the code: the tests in InboundReadingReferenceTests pin the
# interleavings it found on the real channel.
#
# Taker pcs: 0 CAS, 1 read D (the open check), 2 hold, 3 store R=0, 4 read D, 5 read R, 6 claim if D set and R free.
# Dispose pcs: 0 exchange D, 1 read R, 2 claim if R was free, 3 done.
import sys
from functools import lru_cache
T = int(sys.argv[1]); ITER = int(sys.argv[2])
violations=set(); leaks=set()
seen=set()
def claim(s):
    D,R,C,refs,pcs,locs,disp,dloc=s
    if C: return s, False
    return (D,R,1,refs-1,pcs,locs,disp,dloc), True
def bad(s):
    D,R,C,refs,pcs,locs,disp,dloc=s
    # a holder that found open (locs open flag) holding (pc in 2..3) while role ref gone
    for i,(pc,it) in enumerate(pcs):
        op,d,r=locs[i]
        if pc in (2,3) and op and C: return True
    return False
sys.setrecursionlimit(100000)
stack=[(0,0,0,1,tuple((0,0) for _ in range(T)),tuple((0,0,0) for _ in range(T)),0,0)]
while stack:
    s=stack.pop()
    if s in seen: continue
    seen.add(s)
    if bad(s): violations.add(s); continue
    D,R,C,refs,pcs,locs,disp,dloc=s
    moves=[]
    # dispose
    if disp==0: moves.append((1,R,C,refs,pcs,locs,1,dloc))
    elif disp==1: moves.append((D,R,C,refs,pcs,locs,2,R))
    elif disp==2:
        ns=(D,R,C,refs,pcs,locs,3,dloc)
        if dloc==0: ns,_=claim(ns)
        moves.append(ns)
    for i,(pc,it) in enumerate(pcs):
        if it>=ITER: continue
        op,d,r=locs[i]
        def up(pc2,it2,loc2,D2=D,R2=R,C2=C,refs2=refs):
            p=list(pcs);p[i]=(pc2,it2);l=list(locs);l[i]=loc2
            return (D2,R2,C2,refs2,tuple(p),tuple(l),disp,dloc)
        if pc==0:
            if R==0: moves.append(up(1,it,(0,0,0),R2=1))
            else: moves.append(up(0,it+1,(0,0,0)))  # failed take: this iteration gives up
        elif pc==1: moves.append(up(2,it,(1 if D==0 else 0,0,0)))
        elif pc==2: moves.append(up(3,it,locs[i]))
        elif pc==3: moves.append(up(4,it,(0,0,0),R2=0))
        elif pc==4: moves.append(up(5,it,(0,D,0)))
        elif pc==5: moves.append(up(6,it,(0,d,R)))
        elif pc==6:
            ns=up(0,it+1,(0,0,0))
            if d==1 and r==0: ns,_=claim(ns)
            moves.append(ns)
    if not moves:
        if C!=1: leaks.add(s)
    stack.extend(moves)
print("states",len(seen),"violations",len(violations),"leaks",len(leaks))
