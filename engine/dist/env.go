package dist

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultPort is the rendezvous port when MASTER_PORT is unset (torchrun's).
const DefaultPort = 29500

// Env is where this process sits in a data-parallel run.
type Env struct {
	// Rank is the global rank, WorldSize the number of processes.
	Rank, WorldSize int
	// LocalRank is the rank among the processes of this machine: the
	// device ordinal the process uses.
	LocalRank int
	// MasterAddr and MasterPort are where rank 0 listens for the
	// rendezvous.
	MasterAddr string
	MasterPort int
	// Source names the launcher the settings came from ("torchrun",
	// "slurm", "openmpi"), or "" for a single process.
	Source string
}

// Distributed reports whether the run has more than one process.
func (e Env) Distributed() bool { return e.WorldSize > 1 }

// Addr is the rendezvous address, host:port.
func (e Env) Addr() string {
	return fmt.Sprintf("%s:%d", e.MasterAddr, e.MasterPort)
}

// FromEnv reads the rank settings from the environment (through getenv,
// os.Getenv in a program): torchrun's RANK, WORLD_SIZE and LOCAL_RANK
// first, then Open MPI's OMPI_COMM_WORLD_RANK/_SIZE/_LOCAL_RANK, then
// Slurm's SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID. MASTER_ADDR (under
// Slurm: default the first host of SLURM_NODELIST) and MASTER_PORT
// (default DefaultPort) say where rank 0 listens. Without any of them the
// run is one process.
func FromEnv(getenv func(string) string) (Env, error) {
	type source struct{ name, rank, size, local string }
	sources := []source{
		{"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
		{"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
		{"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
	}
	for _, s := range sources {
		if getenv(s.rank) == "" && getenv(s.size) == "" {
			continue
		}
		return fromSource(getenv, s.name, s.rank, s.size, s.local)
	}
	return Env{WorldSize: 1}, nil
}

func fromSource(getenv func(string) string, name, rankVar, sizeVar, localVar string) (Env, error) {
	e := Env{Source: name}
	var err error
	if e.WorldSize, err = envInt(getenv, sizeVar, -1); err != nil {
		return e, err
	}
	if e.Rank, err = envInt(getenv, rankVar, -1); err != nil {
		return e, err
	}
	if e.LocalRank, err = envInt(getenv, localVar, e.Rank); err != nil {
		return e, err
	}
	switch {
	case e.WorldSize < 1:
		return e, fmt.Errorf("%s: %s must be at least 1, got %d", name, sizeVar, e.WorldSize)
	case e.Rank < 0 || e.Rank >= e.WorldSize:
		return e, fmt.Errorf("%s: %s=%d is outside 0..%d (%s=%d)", name, rankVar, e.Rank, e.WorldSize-1, sizeVar, e.WorldSize)
	case e.LocalRank < 0:
		return e, fmt.Errorf("%s: %s must not be negative, got %d", name, localVar, e.LocalRank)
	}
	if e.MasterPort, err = envInt(getenv, "MASTER_PORT", DefaultPort); err != nil {
		return e, err
	}
	if e.MasterPort < 1 || e.MasterPort > 65535 {
		return e, fmt.Errorf("MASTER_PORT=%d is not a TCP port", e.MasterPort)
	}
	e.MasterAddr = getenv("MASTER_ADDR")
	if e.MasterAddr == "" && name == "slurm" {
		e.MasterAddr = FirstHost(getenv("SLURM_NODELIST"))
	}
	if e.MasterAddr == "" {
		if e.WorldSize > 1 {
			return e, fmt.Errorf("%s: %d processes need MASTER_ADDR (the host of rank 0) for the rendezvous", name, e.WorldSize)
		}
		e.MasterAddr = "127.0.0.1"
	}
	return e, nil
}

// envInt reads an integer variable; missing is def, or an error when def < 0.
func envInt(getenv func(string) string, name string, def int) (int, error) {
	s := strings.TrimSpace(getenv(name))
	if s == "" {
		if def < 0 {
			return 0, fmt.Errorf("%s is not set", name)
		}
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not an integer", name, s)
	}
	return v, nil
}

// FirstHost returns the first host of a Slurm node list such as
// "gpu[03-05,09],login1" (gpu03), or "" for an empty list.
func FirstHost(nodelist string) string {
	first, depth := nodelist, 0
	for i, r := range nodelist {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				first = nodelist[:i]
			}
		}
		if first != nodelist {
			break
		}
	}
	open := strings.IndexByte(first, '[')
	if open < 0 {
		return strings.TrimSpace(first)
	}
	end := strings.IndexByte(first[open:], ']')
	if end < 0 {
		return strings.TrimSpace(first)
	}
	group := first[open+1 : open+end]
	lo := strings.FieldsFunc(group, func(r rune) bool { return r == ',' || r == '-' })
	if len(lo) == 0 {
		return strings.TrimSpace(first[:open] + first[open+end+1:])
	}
	return strings.TrimSpace(first[:open] + lo[0] + first[open+end+1:])
}
