-- MobileFaceNet + ArcFace on synthetic RGB faces at 56×56: the whole recipe offline in a few
-- minutes on 2 cores (fvl scripts/train_face.lua, the default config). 300 train identities ×
-- 20 images; 60 held-out identities give the verification pairs (synthetic_val.bin).
return {
  name = "synthetic_mbf",
  data = { kind = "synthetic", identities = 300, per_identity = 20, test_identities = 60, test_per_identity = 6,
           size = 56, pairs = 600, seed = 1 },
  network = "mobilefacenet", embedding_size = 128,
  head = { kind = "arcface", s = 32, m = 0.5 },
  optimizer = "sgd", lr = 0.1, momentum = 0.9, weight_decay = 5e-4, lr_power = 2, warmup_steps = 30,
  clip_grad = 5,
  batch_size = 64, steps = 300,
  verbose = 50, save_every = 100,
  threads = 2,
}
