package prefix

import (
	"testing"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/internal/methodtest"
)

// TestGolden trains every prefix-tuning golden set (global, local, with
// projection, GPT-2) from its initial adapter folder through the trainer
// and compares logits, loss, gradients, the 3-step trajectory, the
// trained tensors and the saved files with PyTorch's; the saved folder
// must load back for inference.
func TestGolden(t *testing.T) {
	methodtest.CheckSets(t, func(m model.Model, dir string, frozen bool) (train.Saver, error) {
		return Load(m, dir, LoadOptions{Frozen: frozen})
	}, "prefix")
}
