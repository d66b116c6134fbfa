"""Small modules with one contract: `forward(features: dict) -> dict`, adding keys to the features.

Keys: `input_ids` (B, T), `attention_mask` (B, T) → `token_embeddings` (B, T, H) →
`sentence_embedding` (B, D) (pooled, then optionally projected and normalised).
"""

from mtl_model.modules.dense import Dense
from mtl_model.modules.heads import SentenceHead, TokenHead
from mtl_model.modules.normalize import Normalize
from mtl_model.modules.pooling import Pooling
from mtl_model.modules.transformer import Transformer

__all__ = ["Dense", "Normalize", "Pooling", "SentenceHead", "TokenHead", "Transformer"]
