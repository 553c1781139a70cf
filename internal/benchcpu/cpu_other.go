//go:build !unix

package main

// cpuSeconds returns 0: CPU time is read only on Unix systems.
func cpuSeconds() float64 { return 0 }
