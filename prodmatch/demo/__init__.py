"""demo: the end-to-end demo on generated catalogues.

`run` is the demo (ingest, embed, evaluate, link, dedupe, report); `world` holds the vocabulary of the generated
products; `catalogues` writes the shop and competitor files and their gold pairs; `pictures` draws product
images; `toymodels` builds small random-weight CLIP / SigLIP checkpoints for tests and offline demos.
"""
