"""Turning candidates back into text: nearest training texts always, the SONAR decoder optionally.

The SONAR decoder (extra ``sonar``: the ``sonar-space`` package and fairseq2) runs only on weights
the user already has locally; nothing is downloaded at run time.
"""

from __future__ import annotations

import numpy as np
import torch

from flowstudy.errors import ConfigError
from flowstudy.guidance.prior import Prior


def nearest_texts(prior: Prior, x: np.ndarray) -> list[dict[str, object]]:
    """For each candidate x [n, D] (original space): its nearest training row, the Euclidean distance in
    standardised space, the cosine in the original space and the row's text (None without texts)."""
    from flowstudy.sampling import nearest_rows

    train = prior.train
    idx, dist = nearest_rows(prior.to_std(x), prior.train_std())
    rows = train.embeddings[idx.numpy()].astype(np.float64)
    x64 = np.asarray(x, dtype=np.float64)
    cos = (x64 * rows).sum(1) / np.maximum(np.linalg.norm(x64, axis=1) * np.linalg.norm(rows, axis=1), 1e-30)
    return [
        {
            "nearest_train_row": int(j),
            "distance": float(d),
            "cosine": float(c),
            "text": train.texts[int(j)] if train.texts is not None else None,
        }
        for j, d, c in zip(idx.tolist(), dist.tolist(), cos.tolist())
    ]


def sonar_decode(x: np.ndarray, decoder: str, tokenizer: str | None = None, lang: str = "eng_Latn") -> list[str]:
    """Decode original-space SONAR embeddings [n, 1024] with a local decoder checkpoint.

    ``decoder``: a local model card name or path that fairseq2 resolves without network access.
    """
    try:
        from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline
    except ImportError as err:
        raise ImportError(
            "decoding embeddings to text needs the SONAR decoder: pip install 'flowstudy[sonar]' and its "
            "weights on this machine (nearest training texts need neither)"
        ) from err
    try:
        pipeline = EmbeddingToTextModelPipeline(decoder=decoder, tokenizer=tokenizer or decoder)
    except Exception as err:  # fairseq2 raises its own types when the card or weights are missing
        raise ConfigError(f"cannot load the SONAR decoder {decoder!r} from local files: {err}") from err
    return list(pipeline.predict(torch.as_tensor(np.asarray(x, dtype=np.float32)), target_lang=lang))
