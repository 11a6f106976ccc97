-- IResNet-18 at reduced resolution (56×56) + CosFace with a margin warm-up (m from 0 to 0.35 over
-- the first 300 steps), AdamW: a second recipe on the synthetic faces.
return {
  name = "synthetic_r18_cosface",
  data = { kind = "synthetic", identities = 300, per_identity = 20, test_identities = 60, test_per_identity = 6,
           size = 56, pairs = 600, seed = 1 },
  network = "r18", embedding_size = 128,
  head = { kind = "cosface", s = 32, m = 0.35 },
  margin_schedule = { field = "m", kind = "linear", from = 0, to = 0.35, steps = 300 },
  optimizer = "adamw", lr = 1e-3, weight_decay = 0.05, lr_power = 2, warmup_steps = 50,
  clip_grad = 5,
  batch_size = 64, steps = 600,
  verbose = 100, save_every = 200,
  threads = 2,
}
