package main

import (
	"strings"
)

// cardAlways are the settings a card lists even at their defaults.
var cardAlways = map[string]bool{
	"lr": true, "lr-schedule": true, "batch-size": true, "grad-accum": true,
	"seq-len": true, "seed": true, "weight-decay": true, "max-grad-norm": true,
}

// cardNever are settings the card shows elsewhere, or that do not
// describe the run.
var cardNever = map[string]bool{
	"model": true, "data": true, "eval-data": true, "out": true, "method": true,
	"config": true, "print-config": true,
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./:,+@%") == "" {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
