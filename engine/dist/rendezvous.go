package dist

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"
)

// message is one JSON line of the rendezvous protocol.
type message struct {
	Type  string `json:"type"` // msgHello, msgID, msgFail, msgBye
	Rank  int    `json:"rank"`
	World int    `json:"world,omitempty"`
	ID    []byte `json:"id,omitempty"`
	Cause string `json:"cause,omitempty"`
}

const (
	msgHello = "hello" // rank → rank 0: I am rank r of a world of w
	msgID    = "id"    // rank 0 → rank: the communicator id; everyone joined
	msgFail  = "fail"  // a rank failed (Cause); rank 0 relays it to the others
	msgBye   = "bye"   // a rank finished: its connection closing is no failure
)

// retryDial is how often a rank retries connecting to rank 0 that does
// not listen yet.
const retryDial = 100 * time.Millisecond

// Group is this process's place in a rendezvous that succeeded: the
// communicator id rank 0 handed out, and the TCP connections kept open to
// watch the other ranks (rank 0 holds one to every rank, every other rank
// one to rank 0). A connection that closes without a goodbye means the
// process at its end died; a rank that fails says why first. Either way
// Failed is closed and Err names the rank and the cause, on every rank.
type Group struct {
	env Env
	id  []byte

	mu     sync.Mutex
	conns  map[int]*peer // by rank
	err    error
	failed chan struct{}
	closed bool
}

type peer struct {
	rank int
	conn net.Conn
	enc  *json.Encoder
	dec  *json.Decoder
	mu   sync.Mutex // serialises writes
	done bool       // said goodbye
}

func newPeer(rank int, c net.Conn) *peer {
	return &peer{rank: rank, conn: c, enc: json.NewEncoder(c), dec: json.NewDecoder(bufio.NewReader(c))}
}

func (p *peer) send(m message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return p.enc.Encode(m)
}

// ID returns the communicator id rank 0 created (the same on every rank).
func (g *Group) ID() []byte { return g.id }

// Failed is closed when another rank died or failed (see Err).
func (g *Group) Failed() <-chan struct{} { return g.failed }

// Err names the rank that died or failed and why, once Failed is closed.
func (g *Group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Rendezvous meets the other ranks of env: rank 0 listens on env.Addr(),
// creates the communicator id with newID and sends it to every rank once
// all WorldSize ranks have connected; the others connect (retrying until
// rank 0 listens) and receive it. It fails, naming the ranks that never
// came, when timeout passes first.
func Rendezvous(ctx context.Context, env Env, timeout time.Duration, newID func() ([]byte, error)) (*Group, error) {
	g := &Group{env: env, conns: map[int]*peer{}, failed: make(chan struct{})}
	deadline := time.Now().Add(timeout)
	var err error
	if env.Rank == 0 {
		err = g.lead(ctx, deadline, timeout, newID)
	} else {
		err = g.join(ctx, deadline, timeout)
	}
	if err != nil {
		g.closeConns()
		return nil, err
	}
	for _, p := range g.conns {
		go g.watch(p)
	}
	return g, nil
}

// lead is rank 0's side of the rendezvous.
func (g *Group) lead(ctx context.Context, deadline time.Time, timeout time.Duration, newID func() ([]byte, error)) error {
	ln, err := net.Listen("tcp", g.env.Addr())
	if err != nil {
		return fmt.Errorf("rendezvous: rank 0 cannot listen on %s (MASTER_ADDR/MASTER_PORT): %w", g.env.Addr(), err)
	}
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	if g.id, err = newID(); err != nil {
		return err
	}
	_ = ln.(*net.TCPListener).SetDeadline(deadline)
	for len(g.conns) < g.env.WorldSize-1 {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("rendezvous at %s timed out after %v: %s never connected", g.env.Addr(), timeout, g.missing())
		}
		if err := g.admit(c, deadline); err != nil {
			c.Close()
			return err
		}
	}
	for _, p := range g.conns {
		if err := p.send(message{Type: msgID, Rank: 0, ID: g.id}); err != nil {
			return fmt.Errorf("rendezvous: sending the communicator id to rank %d: %w", p.rank, err)
		}
	}
	return nil
}

// admit reads a newcomer's hello and checks it against the run.
func (g *Group) admit(c net.Conn, deadline time.Time) error {
	p := newPeer(-1, c)
	_ = c.SetReadDeadline(deadline)
	var m message
	if err := p.dec.Decode(&m); err != nil || m.Type != msgHello {
		return nil // not one of ours (a port scanner, a stray client): ignore it
	}
	_ = c.SetReadDeadline(time.Time{})
	reject := func(format string, args ...any) error {
		cause := fmt.Sprintf(format, args...)
		_ = p.send(message{Type: msgFail, Rank: 0, Cause: cause})
		return errors.New("rendezvous: " + cause)
	}
	switch {
	case m.World != g.env.WorldSize:
		return reject("rank %d says the world has %d ranks, rank 0 says %d", m.Rank, m.World, g.env.WorldSize)
	case m.Rank <= 0 || m.Rank >= g.env.WorldSize:
		return reject("rank %d is outside 1..%d", m.Rank, g.env.WorldSize-1)
	case g.conns[m.Rank] != nil:
		return reject("two processes claim rank %d", m.Rank)
	}
	p.rank = m.Rank
	g.conns[m.Rank] = p
	return nil
}

// missing lists the ranks that have not connected, e.g. "ranks 2, 3".
func (g *Group) missing() string {
	var ranks []int
	for r := 1; r < g.env.WorldSize; r++ {
		if g.conns[r] == nil {
			ranks = append(ranks, r)
		}
	}
	sort.Ints(ranks)
	s := ""
	for i, r := range ranks {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprint(r)
	}
	if len(ranks) == 1 {
		return "rank " + s
	}
	return "ranks " + s
}

// join is the side of every rank but 0.
func (g *Group) join(ctx context.Context, deadline time.Time, timeout time.Duration) error {
	var c net.Conn
	var lastErr error
	for {
		d := net.Dialer{Timeout: time.Until(deadline)}
		var err error
		if c, err = d.DialContext(ctx, "tcp", g.env.Addr()); err == nil {
			break
		}
		lastErr = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().Add(retryDial).After(deadline) {
			return fmt.Errorf("rendezvous: rank %d could not reach rank 0 at %s within %v: %v", g.env.Rank, g.env.Addr(), timeout, lastErr)
		}
		time.Sleep(retryDial)
	}
	p := newPeer(0, c)
	if err := p.send(message{Type: msgHello, Rank: g.env.Rank, World: g.env.WorldSize}); err != nil {
		c.Close()
		return fmt.Errorf("rendezvous: rank %d greeting rank 0 at %s: %w", g.env.Rank, g.env.Addr(), err)
	}
	_ = c.SetReadDeadline(deadline.Add(5 * time.Second))
	var m message
	if err := p.dec.Decode(&m); err != nil {
		c.Close()
		return fmt.Errorf("rendezvous: rank %d got no communicator id from rank 0 within %v (were all %d ranks started?): %v", g.env.Rank, timeout, g.env.WorldSize, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if m.Type == msgFail {
		c.Close()
		return fmt.Errorf("rendezvous: rank 0 refused rank %d: %s", g.env.Rank, m.Cause)
	}
	g.id = m.ID
	g.conns[0] = p
	return nil
}

// watch reads a peer's messages until its goodbye, its failure or the
// connection's end.
func (g *Group) watch(p *peer) {
	for {
		var m message
		if err := p.dec.Decode(&m); err != nil {
			g.mu.Lock()
			quiet := p.done || g.closed
			g.mu.Unlock()
			if !quiet {
				g.fail(p.rank, fmt.Errorf("rank %d exited (its connection to rank %d closed without a goodbye)", p.rank, g.env.Rank))
			}
			return
		}
		switch m.Type {
		case msgBye:
			g.mu.Lock()
			p.done = true
			g.mu.Unlock()
		case msgFail:
			g.fail(m.Rank, errors.New(m.Cause))
		}
	}
}

// fail records the first failure, wakes Failed and, on rank 0, tells
// every other rank.
func (g *Group) fail(rank int, cause error) {
	g.mu.Lock()
	if g.err != nil || g.closed {
		g.mu.Unlock()
		return
	}
	g.err = cause
	close(g.failed)
	peers := g.peers()
	g.mu.Unlock()
	if g.env.Rank == 0 {
		for _, p := range peers {
			if p.rank != rank {
				_ = p.send(message{Type: msgFail, Rank: rank, Cause: cause.Error()})
			}
		}
	}
}

func (g *Group) peers() []*peer {
	ps := make([]*peer, 0, len(g.conns))
	for _, p := range g.conns {
		ps = append(ps, p)
	}
	return ps
}

// Fail tells the other ranks that this one failed with cause (so their
// messages name it), then closes the connections.
func (g *Group) Fail(cause error) {
	msg := message{Type: msgFail, Rank: g.env.Rank, Cause: fmt.Sprintf("rank %d failed: %v", g.env.Rank, cause)}
	g.mu.Lock()
	already := g.err != nil
	g.closed = true
	peers := g.peers()
	g.mu.Unlock()
	if !already {
		for _, p := range peers {
			_ = p.send(msg)
		}
	}
	g.closeConns()
}

// Close says goodbye to the other ranks (this rank finished) and closes
// the connections.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	peers := g.peers()
	g.mu.Unlock()
	for _, p := range peers {
		_ = p.send(message{Type: msgBye, Rank: g.env.Rank})
	}
	g.closeConns()
}

func (g *Group) closeConns() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.conns {
		p.conn.Close()
	}
}
