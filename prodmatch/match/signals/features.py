"""Pair features: every signal of every candidate pair, as one named float32 matrix for the matcher.

This is where the per-signal modules (price, brand, text, codes, ranks) meet. Inputs are the two products of
each pair as mappings (keys title, brand, category, description, price, currency, attributes, codes, and
price_scale and brand_aliases where the reader knows them: `price.price_scales`, `brand.brand_aliases`) plus
the columns computed elsewhere: `similarities` (cosine of each vector space, lexical similarity; NaN where a pair has no value) and `ranks`
(RankColumns per candidate source). Column names are stable public names, because a stored matcher refers to
its features by name: `sim:<space>`, `rank:<source>`, `margin:<source>`, `reverse_rank:<source>`,
`reverse_margin:<source>`, and the fixed names in PRODUCT_FEATURES.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from prodmatch.match.signals import attributes, batch, brand, codes, colours, price, text
from prodmatch.match.signals.ranks import RankColumns, rank_signals
from prodmatch.roles import ROLES_FIELD

Product = Mapping[str, object]

PRODUCT_FEATURES = (
    "price_log_ratio",
    "brand_equal",
    "brand_in_other_title",
    "title_jaccard",
    "title_containment",
    "model_token_jaccard",
    "model_token_containment",
    "numbers_agree",
    "numbers_conflict",
    "plain_number_jaccard",
    "title_length_ratio",
    "category_jaccard",
    "codes_agree",
    "codes_conflict",
    "code_in_other_text",
    "attribute_agreement",
    "colour_agree",
    "colour_conflict",
)


@dataclass(frozen=True, eq=False)  # holds arrays: compare .values explicitly
class FeatureMatrix:
    """Named pair features: `values[i, j]` is feature `names[j]` of pair i; NaN means missing."""

    names: tuple[str, ...]
    values: np.ndarray

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise ValueError(f"values of shape {self.values.shape} do not fit {len(self.names)} names")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate feature names in {self.names}")

    def __len__(self) -> int:
        return self.values.shape[0]

    def column(self, name: str) -> np.ndarray:
        """One feature's values; KeyError naming the feature when it is absent."""
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"no feature {name!r}; have {', '.join(self.names)}") from None

    def rows(self, index: np.ndarray) -> "FeatureMatrix":
        """The features of a subset of pairs (boolean mask or integer index)."""
        return FeatureMatrix(self.names, self.values[index])


def pair_features(
    left_products: Sequence[Product],
    right_products: Sequence[Product],
    *,
    similarities: Mapping[str, np.ndarray] | None = None,
    ranks: Mapping[str, RankColumns] | None = None,
    normalize_brand: Callable[[str], str] | None = None,
    compare_codes: codes.Compare | None = None,
) -> FeatureMatrix:
    """All features of the pairs (left_products[i], right_products[i]), one pair at a time."""
    n = len(left_products)
    if len(right_products) != n:
        raise ValueError(f"{n} left products but {len(right_products)} right products")
    product = per_pair_product_signals(left_products, right_products, normalize_brand, compare_codes)
    return _matrix(n, similarities, ranks, product)


def indexed_pair_features(
    products: Sequence[Product],
    left: np.ndarray,
    right: np.ndarray,
    *,
    similarities: Mapping[str, np.ndarray] | None = None,
    ranks: Mapping[str, RankColumns] | None = None,
    normalize_brand: Callable[[str], str] | None = None,
    code_kind: Callable[[str], str] | None = None,
) -> FeatureMatrix:
    """All features of the pairs (products[left[i]], products[right[i]]): what `pair_features` gives, with the
    product signals computed once per distinct product (`batch.product_signals`), for millions of pairs.

    Codes compare as `prodmatch.embed.codes.compare_codes` does with `code_kind` (default: the code's prefix).
    """
    n = len(left)
    if len(right) != n:
        raise ValueError(f"{n} left products but {len(right)} right products")
    product = batch.product_signals(
        products, left, right, normalize_brand=normalize_brand, code_kind=code_kind
    )
    return _matrix(n, similarities, ranks, product)


def _matrix(
    n: int,
    similarities: Mapping[str, np.ndarray] | None,
    ranks: Mapping[str, RankColumns] | None,
    product: Mapping[str, np.ndarray],
) -> FeatureMatrix:
    columns: dict[str, np.ndarray] = {}
    for name, values in (similarities or {}).items():
        columns[f"sim:{name}"] = _checked(np.asarray(values, dtype=np.float32), n, f"similarity {name!r}")
    for name, rank in (ranks or {}).items():
        for kind in ("rank", "margin", "reverse_rank", "reverse_margin"):
            columns[f"{kind}:{name}"] = _checked(getattr(rank, kind), n, f"ranks {name!r}")
    assert tuple(product) == PRODUCT_FEATURES
    columns.update(product)
    names = tuple(columns)
    values = np.empty((n, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        values[:, j] = columns[name]
    return FeatureMatrix(names, values)


CONTEXT_FEATURES = ("title_jaccard", "model_token_containment", "code_in_other_text", "numbers_agree")


def with_context(
    features: FeatureMatrix,
    source_ids: np.ndarray,
    target_ids: np.ndarray,
    names: Sequence[str] = CONTEXT_FEATURES,
) -> FeatureMatrix:
    """`features` plus, for each feature in `names`, how a pair compares with its competitors.

    `context_margin:<name>` is the pair's value minus the best value among the source product's other
    candidate pairs (positive only for the best), `context_reverse_margin:<name>` the same among the target
    product's candidates. Computed over the candidate pairs given, so call it on all candidates of a link.
    A title overlap of 0.6 is a match when the other candidates reach 0.2 and not when one reaches 0.9.
    """
    columns = [features.values]
    added = []
    for name in names:
        if name not in features.names:
            continue
        context = rank_signals(source_ids, target_ids, features.column(name))
        columns += [context.margin[:, None], context.reverse_margin[:, None]]
        added += [f"context_margin:{name}", f"context_reverse_margin:{name}"]
    return FeatureMatrix((*features.names, *added), np.hstack(columns).astype(np.float32))


def per_pair_product_signals(
    left: Sequence[Product],
    right: Sequence[Product],
    normalize_brand: Callable[[str], str] | None = None,
    compare_codes: codes.Compare | None = None,
) -> dict[str, np.ndarray]:
    """The PRODUCT_FEATURES columns, pair by pair through the per-signal modules: their definition."""

    def get(products: Sequence[Product], key: str) -> list:
        return [p.get(key) for p in products]

    lt, rt = get(left, "title"), get(right, "title")
    lb, rb = get(left, "brand"), get(right, "brand")
    la, ra = get(left, "brand_aliases"), get(right, "brand_aliases")
    numbers_agree, numbers_conflict = text.numbers_agreement(lt, rt)
    codes_agree, codes_conflict = codes.code_signals(
        get(left, "codes"), get(right, "codes"), compare=compare_codes
    )
    colour_agree, colour_conflict = colours.colour_agreement(list(left), list(right))
    out = {
        "price_log_ratio": price.price_log_ratio(
            get(left, "price"),
            get(left, "currency"),
            get(right, "price"),
            get(right, "currency"),
            get(left, "price_scale"),
            get(right, "price_scale"),
        ),
        "brand_equal": brand.brand_equal(
            lb, rb, normalize=normalize_brand, left_aliases=la, right_aliases=ra
        ),
        "brand_in_other_title": brand.brand_in_other_title(
            lb, lt, rb, rt, normalize=normalize_brand, left_aliases=la, right_aliases=ra
        ),
        "title_jaccard": text.token_jaccard(lt, rt),
        "title_containment": text.token_containment(lt, rt),
        "model_token_jaccard": text.model_token_jaccard(lt, rt),
        "model_token_containment": text.model_token_containment(lt, rt),
        "numbers_agree": numbers_agree,
        "numbers_conflict": numbers_conflict,
        "plain_number_jaccard": text.plain_number_jaccard(lt, rt),
        "title_length_ratio": text.length_ratio(lt, rt),
        "category_jaccard": text.token_jaccard(get(left, "category"), get(right, "category")),
        "codes_agree": codes_agree,
        "codes_conflict": codes_conflict,
        "code_in_other_text": codes.code_in_other_text(
            get(left, "codes"),
            [codes.searched_text(p) for p in left],
            get(right, "codes"),
            [codes.searched_text(p) for p in right],
        ),
        "attribute_agreement": attributes.attribute_agreement(
            get(left, "attributes"), get(right, "attributes"), get(left, ROLES_FIELD), get(right, ROLES_FIELD)
        ),
        "colour_agree": colour_agree,
        "colour_conflict": colour_conflict,
    }
    assert tuple(out) == PRODUCT_FEATURES
    return out


def _checked(values: np.ndarray, n: int, what: str) -> np.ndarray:
    if values.shape != (n,):
        raise ValueError(f"{what} has shape {values.shape}, expected ({n},)")
    return values.astype(np.float32)
