package dist

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFromEnv(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want Env
		err  string
	}{
		{"single process", nil, Env{WorldSize: 1}, ""},
		{"torchrun", map[string]string{"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"},
			Env{Rank: 3, WorldSize: 8, LocalRank: 1, MasterAddr: "n1", MasterPort: 1234, Source: "torchrun"}, ""},
		{"slurm takes the first host", map[string]string{"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODELIST": "gpu[07-08,10],login"},
			Env{Rank: 5, WorldSize: 8, LocalRank: 1, MasterAddr: "gpu07", MasterPort: DefaultPort, Source: "slurm"}, ""},
		{"open mpi", map[string]string{"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1", "MASTER_ADDR": "h"},
			Env{Rank: 1, WorldSize: 2, LocalRank: 1, MasterAddr: "h", MasterPort: DefaultPort, Source: "openmpi"}, ""},
		{"open mpi without MASTER_ADDR", map[string]string{"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"}, Env{}, "need MASTER_ADDR"},
		{"rank out of range", map[string]string{"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h"}, Env{}, "RANK=2 is outside 0..1"},
		{"bad port", map[string]string{"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "x"}, Env{}, `MASTER_PORT="x" is not an integer`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := FromEnv(func(k string) string { return c.env[k] })
			if c.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestFirstHost(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"node1":           "node1",
		"a,b":             "a",
		"gpu[03-05,09],x": "gpu03",
		"rack[2,4]-ib":    "rack2-ib",
		"n[001-004]":      "n001",
		"solo[7]":         "solo7",
	} {
		assert.Equal(t, want, FirstHost(in), in)
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRendezvous runs three ranks in one process: all get rank 0's id;
// then rank 2 fails and ranks 0 and 1 learn it, naming rank 2.
func TestRendezvous(t *testing.T) {
	port := freePort(t)
	groups := make([]*Group, 3)
	errs := make(chan error, 3)
	for r := range groups {
		go func(r int) {
			env := Env{Rank: r, WorldSize: 3, MasterAddr: "127.0.0.1", MasterPort: port}
			g, err := Rendezvous(context.Background(), env, 10*time.Second, func() ([]byte, error) { return []byte("id-42"), nil })
			groups[r] = g
			errs <- err
		}(r)
	}
	for range groups {
		require.NoError(t, <-errs)
	}
	for r, g := range groups {
		assert.Equal(t, []byte("id-42"), g.ID(), "rank "+strconv.Itoa(r))
	}
	groups[2].Fail(assert.AnError)
	for _, r := range []int{0, 1} {
		select {
		case <-groups[r].Failed():
			assert.Contains(t, groups[r].Err().Error(), "rank 2 failed")
		case <-time.After(5 * time.Second):
			t.Fatalf("rank %d never learned that rank 2 failed", r)
		}
	}
	groups[0].Close()
	groups[1].Close()
}

// TestRendezvousTimeout names the ranks that never came.
func TestRendezvousTimeout(t *testing.T) {
	env := Env{Rank: 0, WorldSize: 3, MasterAddr: "127.0.0.1", MasterPort: freePort(t)}
	_, err := Rendezvous(context.Background(), env, 300*time.Millisecond, func() ([]byte, error) { return nil, nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ranks 1, 2 never connected")
}

// TestRendezvousTimeoutJoining: a rank other than 0 gives up, naming
// what it waited for, when rank 0 never listens, and when rank 0 listens
// but never hands out the id because a third rank does not come (rank 0
// then names that rank).
func TestRendezvousTimeoutJoining(t *testing.T) {
	t.Run("no rank 0", func(t *testing.T) {
		env := Env{Rank: 1, WorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: freePort(t)}
		start := time.Now()
		_, err := Rendezvous(context.Background(), env, 400*time.Millisecond, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "rank 1 could not reach rank 0 at 127.0.0.1:")
		assert.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("rank 2 missing", func(t *testing.T) {
		port := freePort(t)
		env := func(r int) Env { return Env{Rank: r, WorldSize: 3, MasterAddr: "127.0.0.1", MasterPort: port} }
		lead := make(chan error, 1)
		go func() {
			_, err := Rendezvous(context.Background(), env(0), 400*time.Millisecond, func() ([]byte, error) { return []byte{1}, nil })
			lead <- err
		}()
		_, err := Rendezvous(context.Background(), env(1), 400*time.Millisecond, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "rank 1 got no communicator id from rank 0")
		select {
		case err := <-lead:
			require.Error(t, err)
			assert.Contains(t, err.Error(), "rank 2 never connected")
		case <-time.After(5 * time.Second):
			t.Fatal("rank 0 still waits")
		}
	})
}

// TestRendezvousDeadRank: a rank whose connection closes without a
// goodbye is reported as exited.
func TestRendezvousDeadRank(t *testing.T) {
	port := freePort(t)
	env := func(r int) Env { return Env{Rank: r, WorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: port} }
	done := make(chan *Group, 1)
	go func() {
		g, err := Rendezvous(context.Background(), env(1), 10*time.Second, nil)
		assert.NoError(t, err)
		done <- g
	}()
	g0, err := Rendezvous(context.Background(), env(0), 10*time.Second, func() ([]byte, error) { return []byte{1}, nil })
	require.NoError(t, err)
	g1 := <-done
	g1.closeConns() // as a killed process's sockets close
	select {
	case <-g0.Failed():
		assert.Contains(t, g0.Err().Error(), "rank 1 exited")
	case <-time.After(5 * time.Second):
		t.Fatal("rank 0 did not notice that rank 1 is gone")
	}
}
