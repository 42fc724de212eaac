"""The synthetic VGGSound-like corpus (`python -m pipeline.synth`): real H.264/AAC mp4 clips of coloured shapes with
their own sounds, a `vggsound.csv`, and VGG-SS-, IS3-, IS3+- and S4-style test sets in the official formats.
Modules: `cli` (the command), `corpus` (`generate`), `plan` (what to render, from the settings alone), `jobs`
(rendering one clip or test item), `scenes` and `sounds` (the classes' looks and voices), `mp4writer`, `testsets`."""
