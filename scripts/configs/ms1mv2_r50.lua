-- IResNet-50 + ArcFace on MS1MV2 as insightface's configs/ms1mv2_r50.py (margins (1.0, 0.5, 0.0),
-- s = 64, SGD lr 0.1 for a total batch of 512 — scaled linearly to the batch here —, weight decay
-- 5e-4, polynomial decay power 2, 20 epochs, verification on the .bin packs every 2000 steps).
-- Needs the dataset: data.path = the directory's train.rec (train.idx and property beside it).
return {
  name = "ms1mv2_r50",
  data = { kind = "rec", path = "/data/faces_emore/train.rec" },
  val = { "/data/faces_emore/lfw.bin", "/data/faces_emore/cfp_fp.bin", "/data/faces_emore/agedb_30.bin" },
  network = "r50", embedding_size = 512, dropout = 0,
  head = { kind = "arcface", s = 64, m = 0.5 },
  optimizer = "sgd", lr = 0.1 * 128 / 512, momentum = 0.9, weight_decay = 5e-4, lr_power = 2, warmup_steps = 0,
  clip_grad = 5,
  batch_size = 128, epochs = 20,
  verbose = 2000, save_every = 2000,
  threads = 2,
}
