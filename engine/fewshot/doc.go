// Package fewshot learns and measures fast adaptation: first-order
// meta-learning (Reptile and first-order MAML) of a method's trainable
// parameters over a family of tasks, and k-shot evaluation (adapt a few
// steps on k examples of a task, then score exact match on its held-out
// examples).
//
// It is independent of the fine-tuning method: the parameters it adapts
// and meta-learns are whatever the model marks trainable (Param.Trainable)
// once a method is installed — LoRA, bottleneck adapters, prompt or prefix
// tuning alike. All arithmetic goes through the model's engine.Backend.
//
// The pieces compose:
//   - Snapshot copies a parameter set's values (θ) and puts them back;
//   - Adapt runs the inner loop: a few steps of SGD or AdamW on a GradFunc;
//   - Learner.Step is one meta-update over a meta-batch of Episodes;
//   - Task, Split and Episode turn examples into support and query sets,
//     LossGrad makes a GradFunc of a model and examples, and Score adapts
//     on a support set and scores exact match on a query set.
package fewshot
