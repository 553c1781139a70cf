package lora

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
)

// randStateFormat names the layout MarshalRandState writes, so a state
// from another layout (or another method) is refused instead of
// misread.
const randStateFormat = "gotune-lora-dropout-pcg/1"

// randState is the JSON MarshalRandState writes: the PCG state of every
// layer's dropout stream, in the adapter's layer order, with the layer's
// path so that a state saved for another set of layers is refused by
// name.
type randState struct {
	Format string           `json:"format"`
	Layers []layerRandState `json:"layers"`
}

type layerRandState struct {
	Path string `json:"path"`
	PCG  []byte `json:"pcg"`
}

// MarshalRandState returns the state of the layers' dropout streams, so a
// checkpoint can store it and a resumed run draw the same masks as an
// uninterrupted one (the trainer's train.RandStater). The state is
// returned with dropout 0 too (the streams then sit unused), so resuming
// never reports a missing state.
func (a *Adapter) MarshalRandState() ([]byte, error) {
	if a.removed {
		return nil, errors.New("lora: the adapter was removed from its model")
	}
	st := randState{Format: randStateFormat, Layers: make([]layerRandState, len(a.layers))}
	for i, l := range a.layers {
		b, err := l.src.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("lora: dropout state of %s: %w", l.Path, err)
		}
		st.Layers[i] = layerRandState{Path: l.Path, PCG: b}
	}
	return json.Marshal(st)
}

// UnmarshalRandState restores the dropout streams from a state
// MarshalRandState returned. The state must list exactly this adapter's
// layers in order; on error no stream has changed.
func (a *Adapter) UnmarshalRandState(b []byte) error {
	if a.removed {
		return errors.New("lora: the adapter was removed from its model")
	}
	var st randState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("lora: the dropout state is not a LoRA random state: %w", err)
	}
	if st.Format != randStateFormat {
		return fmt.Errorf("lora: the dropout state has format %q, this gotune reads %q", st.Format, randStateFormat)
	}
	if len(st.Layers) != len(a.layers) {
		return fmt.Errorf("lora: the dropout state holds %d layers, the adapter has %d", len(st.Layers), len(a.layers))
	}
	// Decode every stream before touching any, so an error leaves the
	// adapter as it was.
	srcs := make([]rand.PCG, len(a.layers))
	for i, l := range a.layers {
		ls := st.Layers[i]
		if ls.Path != l.Path {
			return fmt.Errorf("lora: the dropout state's layer %d is %s, the adapter's is %s", i, ls.Path, l.Path)
		}
		if err := srcs[i].UnmarshalBinary(ls.PCG); err != nil {
			return fmt.Errorf("lora: dropout state of %s: %w", l.Path, err)
		}
	}
	for i, l := range a.layers {
		*l.src = srcs[i]
	}
	return nil
}

// ForwardRandState returns the state of the layer's dropout stream, the
// one the next training Forward draws its mask from (model.RandomForward:
// gradient checkpointing replays it to redraw the same mask).
func (l *Linear) ForwardRandState() any { return *l.src }

// SetForwardRandState restores a state ForwardRandState returned.
func (l *Linear) SetForwardRandState(state any) { *l.src = state.(rand.PCG) }
