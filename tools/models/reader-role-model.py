# Exhaustive models of the reader role's protocols (InboundChannel.TryTakeReaderRole, its release, Dispose, and the
# connection's followers), under x86-TSO: a plain store waits in its thread's store buffer (a FIFO, flushed at any
# moment) and the thread's own later loads see it first; a locked instruction (compare-exchange, exchange, increment)
# drains the buffer and acts on memory; Interlocked.MemoryBarrierProcessWide drains every thread's buffer.
#
# 1. The ring's hold (written by the second review of session 2026-12-04 10:11 under sequential consistency; made a
#    TSO model in session 2026-12-04 16:56, when the release lost its locked instruction). Every interleaving of one
#    Dispose and T takers, each taking and releasing the role ITER times. It reports states where a holder that found
#    the ring open still holds the role after the role's reference was given back (violations), and end states where
#    it was never given back (leaks).
#
#      python3 tools/models/reader-role-model.py hold 3 3 plain barrier   # the code on x64: 0 violations, 0 leaks
#      python3 tools/models/reader-role-model.py hold 3 3 fenced none     # the code elsewhere: 0, 0
#      python3 tools/models/reader-role-model.py hold 3 3 plain none      # a plain release, no barrier: 1 leak
#
#    Taker pcs: 0 CAS, 1 read D (the open check), 2 hold, 3 release R=0 (plain: buffered; fenced: a store and a full
#    fence), 4 read D, 5 read R, 6 claim if D set and R free. Dispose pcs: 0 exchange D, 1 the process-wide barrier (or
#    nothing), 2 read R, 3 claim if R was free. With the release's look at R removed (`--no-role-look`: the bug the first
#    review found) it reports violations.
#
# 2. A follower's park (PageRangeConnection.WaitAsCountedFollower). One releaser
#    stores R=0 (plain), then reads the fencing mode M and the follower count, and tells the followers (a locked
#    increment of the generation, then a pulse under the gate if one is parked) if either is not 0. Each follower counts
#    itself (a locked increment), then, unless M is 2, switches M from 0 to 1 (a compare-exchange), issues the
#    process-wide barrier and stores M=2; then it counts itself parked (a locked increment, under the gate), reads the
#    generation and R, and parks if the role is held and nothing changed. It reports end states where a follower is
#    parked and nobody will pulse it (a lost wake: it would wait out the park timeout). A follower that finds M at 2
#    skips the barrier: some follower's barrier came after every release that read M as 0 (they skip the fence), and
#    every later release fences.
#
#      python3 tools/models/reader-role-model.py park 3 barrier   # the code on x64: 0 lost wakes
#      python3 tools/models/reader-role-model.py park 3 none      # no barrier before the first park: lost wakes
#
# 3. The background reader's wait for an async caller (PageRangeConnection.PumpLoop; written by the review of session
#    2026-12-04 16:56, which found the hole it shows). One plain release (H), a follower S that switches the mode, an
#    async caller A that counts itself and sets the pump's event, and the pump P, which tries the role (a
#    compare-exchange), then reads the mode, switches it if not fenced, and looks at the role again before it waits
#    ("look"), or, as first written, only when it switched ("no-look"). It reports end states where the pump waits on
#    its event, nobody will set it, and the role is free.
#
#      python3 tools/models/reader-role-model.py pump look      # the code: 0
#      python3 tools/models/reader-role-model.py pump no-look   # 1
#
# A model of the protocol, not of the code: the tests in InboundReadingReferenceTests and ConnectionWakeupTests pin
# the interleavings on the real channel and connection.
import sys


def hold(T, ITER, plain, barrier, role_look=True):
    # state: D, R (memory), C (claimed), pcs, locs (open, d, r) per taker, buffered R=0 per taker, Dispose pc, its r
    start = (0, 0, 0, tuple((0, 0) for _ in range(T)), tuple((0, 0, 0) for _ in range(T)), tuple(0 for _ in range(T)), 0, 0)
    seen, violations, leaks, stack = set(), 0, 0, [start]
    while stack:
        s = stack.pop()
        if s in seen:
            continue
        seen.add(s)
        D, R, C, pcs, locs, bufs, disp, dloc = s
        if any(pc in (2, 3) and locs[i][0] and C for i, (pc, it) in enumerate(pcs)):
            violations += 1
            continue
        moves = []
        for i in range(T):
            if bufs[i]:
                b = list(bufs); b[i] = 0
                moves.append((D, 0, C, pcs, locs, tuple(b), disp, dloc))
        if disp == 0:
            moves.append((1, R, C, pcs, locs, bufs, 1, dloc))
        elif disp == 1:
            if barrier:
                moves.append((D, 0 if any(bufs) else R, C, pcs, locs, tuple(0 for _ in bufs), 2, dloc))
            else:
                moves.append((D, R, C, pcs, locs, bufs, 2, dloc))
        elif disp == 2:
            moves.append((D, R, C, pcs, locs, bufs, 3, R))
        elif disp == 3:
            moves.append((D, R, 1 if dloc == 0 else C, pcs, locs, bufs, 4, dloc))
        for i, (pc, it) in enumerate(pcs):
            if it >= ITER:
                continue
            def up(pc2, it2, loc2, R2=R, C2=C, buf2=None):
                p = list(pcs); p[i] = (pc2, it2); l = list(locs); l[i] = loc2; b = list(bufs)
                if buf2 is not None:
                    b[i] = buf2
                return (D, R2, C2, tuple(p), tuple(l), tuple(b), disp, dloc)
            op, d, r = locs[i]
            if pc == 0:
                if bufs[i]:
                    continue  # a locked instruction drains the thread's own buffer first (a flush move)
                moves.append(up(1, it, (0, 0, 0), R2=1) if R == 0 else up(0, it + 1, (0, 0, 0)))
            elif pc == 1:
                moves.append(up(2, it, (1 if D == 0 else 0, 0, 0)))
            elif pc == 2:
                moves.append(up(3, it, locs[i]))
            elif pc == 3:
                moves.append(up(4, it, (0, 0, 0), buf2=1) if plain else up(4, it, (0, 0, 0), R2=0))
            elif pc == 4:
                moves.append(up(5, it, (0, D, 0)))
            elif pc == 5:
                moves.append(up(6, it, (0, d, 0 if bufs[i] else R)))
            elif pc == 6:
                ns = up(0, it + 1, (0, 0, 0))
                if d == 1 and (r == 0 or not role_look) and not ns[2]:
                    ns = ns[:2] + (1,) + ns[3:]
                moves.append(ns)
        if not moves and C != 1:
            leaks += 1
        stack.extend(moves)
    print("states", len(seen), "violations", violations, "leaks", leaks)


def park(followers, followers_barrier=True):
    """Model 2: one release of the role against FOLLOWERS threads that count themselves and park (see the header)."""
    def rd(mem,buf,var):
        for v,x in reversed(buf):
            if v==var: return x
        return mem[var]
    VARS=['R','M','F','P','G']
    def key(mem): return tuple(mem[v] for v in VARS)
    # thread state: (pc, locals tuple, buffer tuple)
    start_mem={'R':1,'M':0,'F':0,'P':0,'G':0}
    # releaser pcs: 0 store R=0; 1 load M -> m; 2 load F -> f; 3 if m or f: drain+G+=1 (locked), load P->p, goto 4 else done(9); 4 if p: wake all -> done
    # follower pcs: 0 F+=1 (locked); 1 load M -> m; 2 if m!=2: CAS M 0->1 (locked); 3 barrier (drain all); 4 store M=2 (buffered) ; (if m==2 skip to 5) 5 P+=1 (locked); 6 load G->g, load R->r; 7 if r==0 or g!=0: done(not parked) else parked(8); 8 parked (woken -> done)
    def step(state):
        mem,thr=state
        mem=dict(zip(VARS,mem)); out=[]
        # flushes
        for i,(pc,loc,buf) in enumerate(thr):
            if buf:
                m2=dict(mem); v,x=buf[0]; m2[v]=x
                t=list(thr); t[i]=(pc,loc,buf[1:]); out.append((key(m2),tuple(t)))
        for i,(pc,loc,buf) in enumerate(thr):
            def put(pc2,loc2,buf2=buf,m2=mem,thr2=None):
                t=list(thr if thr2 is None else thr2); t[i]=(pc2,loc2,buf2); out.append((key(m2),tuple(t)))
            if i==0:
                if pc==0: put(1,loc,buf+(('R',0),))
                elif pc==1: put(2,(rd(mem,buf,'M'),))
                elif pc==2: put(3,loc+(rd(mem,buf,'F'),))
                elif pc==3:
                    if buf: continue
                    m,f=loc
                    if m or f:
                        m2=dict(mem); m2['G']+=1
                        put(4,(m2['P'],),m2=m2)
                    else: put(9,())
                elif pc==4:
                    (p,)=loc
                    if p:
                        if any(tt[0] in (6,7) for tt in thr[1:]): continue  # the gate: a follower checking holds it
                        t=list(thr)
                        for j in range(1,len(t)):
                            if t[j][0]==8: t[j]=(9,(),t[j][2])
                        put(9,(),thr2=t)
                    else: put(9,())
            else:
                if pc==0:
                    if buf: continue
                    m2=dict(mem); m2['F']+=1; put(1,(),m2=m2)
                elif pc==1:
                    m=rd(mem,buf,'M')
                    if not followers_barrier: put(5,())
                    else: put(2 if m!=2 else 5,())
                elif pc==2:
                    if buf: continue
                    m2=dict(mem)
                    if m2['M']==0: m2['M']=1
                    put(3,(),m2=m2)
                elif pc==3:
                    m2=dict(mem); t=list(thr)
                    for j in range(len(t)):
                        for v,x in t[j][2]: m2[v]=x
                        t[j]=(t[j][0],t[j][1],())
                    t[i]=(4,(),())
                    out.append((key(m2),tuple(t)))
                elif pc==4: put(5,(),buf+(('M',2),))
                elif pc==5:
                    if buf: continue
                    m2=dict(mem); m2['P']+=1; put(6,(),m2=m2)
                elif pc==6: put(7,(rd(mem,buf,'G'),rd(mem,buf,'R')))
                elif pc==7:
                    g,r=loc
                    put(9 if (r==0 or g!=0) else 8,())
        return out

    init = (key(start_mem), tuple([(0, (), ())] + [(0, (), ()) for _ in range(followers)]))
    seen, stack, lost = set(), [init], 0
    while stack:
        s = stack.pop()
        if s in seen:
            continue
        seen.add(s)
        nxt = step(s)
        if not nxt and any(t[0] == 8 for t in s[1][1:]):
            lost += 1
        stack.extend(nxt)
    print("states", len(seen), "lost wakes", lost)


def pump(RECHECK):
    """Model 3: the background reader's wait for an async caller (see the header)."""
    VARS = ['R', 'M', 'F', 'G', 'A', 'W']
    def rd(mem, buf, v):
        for var, x in reversed(buf):
            if var == v: return x
        return mem[v]
    start_mem = dict(R=1, M=0, F=0, G=0, A=0, W=0)
    # H: 0 W R=0 buf; 1 m=M; 2 f=F; 3 if m|f: locked G++ ; 4 a=A; 5 if a: locked W=1; 9 done
    # S: 0 locked F++; 1 m=M; 2 if m!=2: locked CAS M 0->1 else done; 3 barrier; 4 M=2 buf; 9 done
    # A: 0 locked A++; 1 locked W=1; 9 done
    # P: 0 wait W==1 (blocked otherwise); 1 locked W=0 (Reset); 2 locked CAS R -> ok: 9(success) else 3; 3 m=M;
    #    4 if m!=2: locked CAS M; 5 barrier; 6 M=2 buf; 7 r=R: if r==0 -> 9 success else 0 (wait)
    #    (with m==2: without RECHECK -> 0 (wait); with RECHECK -> 7)
    def key(mem): return tuple(mem[v] for v in VARS)
    def step(state):
        memt, thr = state
        mem = dict(zip(VARS, memt)); out = []
        for i, (pc, loc, buf) in enumerate(thr):
            if buf:
                m2 = dict(mem); v, x = buf[0]; m2[v] = x
                t = list(thr); t[i] = (pc, loc, buf[1:]); out.append((key(m2), tuple(t)))
        def barrier(i, pc2):
            m2 = dict(mem); t = list(thr)
            for j in range(len(t)):
                for v, x in t[j][2]: m2[v] = x
                t[j] = (t[j][0], t[j][1], ())
            t[i] = (pc2, t[i][1], ())
            out.append((key(m2), tuple(t)))
        for i, (pc, loc, buf) in enumerate(thr):
            def put(pc2, loc2=loc, buf2=buf, m2=mem):
                t = list(thr); t[i] = (pc2, loc2, buf2); out.append((key(m2), tuple(t)))
            def locked(fn, pc2, loc2=loc):
                if buf: return
                m2 = dict(mem); r = fn(m2); put(pc2 if not callable(pc2) else pc2(r), loc2, (), m2)
            if pc == 9: continue
            if i == 0:  # H
                if pc == 0: put(1, loc, buf + (('R', 0),))
                elif pc == 1: put(2, (rd(mem, buf, 'M'),))
                elif pc == 2: put(3, loc + (rd(mem, buf, 'F'),))
                elif pc == 3:
                    if loc[0] or loc[1]: locked(lambda m: m.__setitem__('G', m['G'] + 1), 4)
                    else: put(4)
                elif pc == 4: put(5, (rd(mem, buf, 'A'),))
                elif pc == 5:
                    if loc[0]: locked(lambda m: m.__setitem__('W', 1), 9)
                    else: put(9)
            elif i == 1:  # S
                if pc == 0: locked(lambda m: m.__setitem__('F', m['F'] + 1), 1)
                elif pc == 1: put(2 if rd(mem, buf, 'M') != 2 else 9)
                elif pc == 2: locked(lambda m: m.__setitem__('M', 1) if m['M'] == 0 else None, 3)
                elif pc == 3: barrier(i, 4)
                elif pc == 4: put(9, loc, buf + (('M', 2),))
            elif i == 2:  # A
                if pc == 0: locked(lambda m: m.__setitem__('A', m['A'] + 1), 1)
                elif pc == 1: locked(lambda m: m.__setitem__('W', 1), 9)
            else:  # P
                if pc == 0:
                    if rd(mem, buf, 'W') == 1: put(1)
                elif pc == 1: locked(lambda m: m.__setitem__('W', 0), 2)
                elif pc == 2:
                    if buf: continue
                    m2 = dict(mem)
                    if m2['R'] == 0:
                        m2['R'] = 1; put(9, ('took',), (), m2)
                    else: put(3, loc, (), m2)
                elif pc == 3:
                    m = rd(mem, buf, 'M')
                    put(4 if m != 2 else (7 if RECHECK else 0))
                elif pc == 4: locked(lambda m: m.__setitem__('M', 1) if m['M'] == 0 else None, 5)
                elif pc == 5: barrier(i, 6)
                elif pc == 6: put(7, loc, buf + (('M', 2),))
                elif pc == 7:
                    put(1 if False else (2 if rd(mem, buf, 'R') == 0 else 0))  # 'continue' re-runs the loop (CAS)
        return out
    init = (key(start_mem), tuple((0, (), ()) for _ in range(4)))
    seen, stack, lost, ex = set(), [init], 0, None
    while stack:
        s = stack.pop()
        if s in seen: continue
        seen.add(s)
        n = step(s)
        if not n:
            mem = dict(zip(VARS, s[0]))
            if s[1][3][0] == 0 and mem['R'] == 0 and mem['W'] == 0:
                lost += 1
        stack.extend(n)
    print("states", len(seen), "pump asleep with the role free:", lost)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["hold"] and len(args) >= 5:
        hold(int(args[1]), int(args[2]), args[3] == "plain", args[4] == "barrier", "--no-role-look" not in args)
    elif args[:1] == ["park"] and len(args) == 3:
        park(int(args[1]), args[2] == "barrier")
    elif args[:1] == ["pump"] and len(args) == 2:
        pump(args[1] == "look")
    else:
        sys.exit("usage: reader-role-model.py hold T ITER plain|fenced barrier|none [--no-role-look] | park FOLLOWERS barrier|none"
                 " | pump look|no-look")
