"""quality: how good the matches are, and making them better.

`gold` reads gold-pair files (the one reader); `metrics` computes recall@k, MRR and the precision / recall / F1
sweep; `plots` draws them; `evaluate` scores every space of a model against gold pairs and recommends a space
and threshold; `finetune` trains a model contrastively on gold pairs and registers it.
"""

from prodmatch.quality.evaluate import EvalReport, evaluate, save_recommendation
from prodmatch.quality.gold import GoldPair, read_gold

__all__ = ["EvalReport", "GoldPair", "evaluate", "read_gold", "save_recommendation"]
