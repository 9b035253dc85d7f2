"""A real victim for the discrete text attacks' tests: logistic regression on word presence, trained inside
the tests on Rotten Tomatoes sentences (tests/text/test_text_attacks.py, test_text_samples.py)."""

import collections

import torch
from torch import nn

from bench.task import Context, TaskModel
from domains.text import constraints as C
from domains.text.datasets import TextList


class BowVictim(TaskModel):
    """Logistic regression on word presence (the constraint set's words, lower-cased)."""

    def __init__(self, vocab):
        super().__init__(nn.Linear(len(vocab), 2))
        self.vocab = {w: i for i, w in enumerate(vocab)}

    def tokenize(self, texts):
        x = torch.zeros(len(texts), len(self.vocab))
        for r, t in enumerate(texts):
            for w in C.words(t):
                j = self.vocab.get(w.lower())
                if j is not None:
                    x[r, j] = 1.0
        return {"bow": x, "text": TextList(texts)}

    def encode(self, inputs):
        return inputs["bow"].float(), Context()

    def forward(self, z, ctx=None):
        return self.net(z)

    @torch.no_grad()
    def classify_texts(self, texts):
        return self.net(self.tokenize(texts)["bow"])


def train_victim(texts, y) -> BowVictim:
    """The victim on words seen at least twice in ``texts``: Adam, 300 full-batch steps, seed 0, eval mode."""
    counts = collections.Counter(w.lower() for t in texts for w in set(C.words(t)))
    torch.manual_seed(0)
    model = BowVictim(sorted(w for w, c in counts.items() if c >= 2))
    x = model.tokenize(texts)["bow"]
    opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model.net(x), y).backward()
        opt.step()
    return model.eval()
