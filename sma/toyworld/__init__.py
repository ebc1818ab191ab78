"""A toy video world where motion is known exactly, and a tiny pretrained base model that generates it.

- :mod:`.world`: procedural clips (shapes, colours, textures, backgrounds, nuisance) for every motion
  family, with per-frame ground truth (centre, angle, scale) and per-pixel flow;
- :mod:`.codec`: the fixed invertible pixel <-> latent map and the appearance embedding that replaces
  the text prompt (``encoder_hidden_states``);
- :mod:`.tracker`: the colour-mask shape tracker and the trajectory error against known motion;
- :mod:`.base`: the pretrained base (the pack's tiny UNet + motion module), its files and DDIM sampling;
- :mod:`.quality`: the checks that say whether a base is good enough;
- :mod:`.pretrain`: how the base is trained.
"""
