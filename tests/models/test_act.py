"""models/act.py, the ACT machinery every core shares, driven by a minimal core defined here: one latent state,
one network. That it runs at all is the promise that a new core only declares its states and its recursion."""
import math

import torch

from models.act import LayeredConfig, ReasoningModule, RecursiveReasoningACT, RecursiveReasoningInner
from models.losses import ACTLossHead
from tests.helpers import random_act_batch

TINY = dict(batch_size=3, seq_len=6, num_puzzle_identifiers=5, vocab_size=7, puzzle_emb_ndim=8, H_cycles=1,
            L_cycles=1, H_layers=0, L_layers=1, hidden_size=8, expansion=2, num_heads=2, pos_encodings="learned",
            halt_max_steps=3, halt_exploration_prob=0.0, no_ACT_continue=True, forward_dtype="float32")


class EchoInner(RecursiveReasoningInner):
    latent_states = {"h": "h_init"}
    answer_state = "h"
    noise_state = "h"

    def build_levels(self) -> None:
        self.net = ReasoningModule(self.config, self.config.L_layers)

    def recurse(self, states, x, cos_sin):
        self.seen = states["h"].detach().clone()
        return {"h": self.net(states["h"], x, cos_sin)}

    def segment_calls(self):
        return [(self.net, 0, 1)]


class Echo(RecursiveReasoningACT):
    config_class = LayeredConfig
    inner_class = EchoInner


def make(**overrides):
    torch.manual_seed(0)
    return Echo({**TINY, **overrides})


def test_a_core_declares_its_states_and_the_machinery_carries_them():
    model = make()
    assert "inner.h_init" in model.state_dict() and not any("H_init" in k for k in model.state_dict())
    carry = model.initial_carry(random_act_batch())
    assert list(carry.inner_carry) == ["h"] and carry.inner_carry["h"].shape == (3, 1 + 6, 8)
    carry, outputs = model(carry, random_act_batch())
    assert outputs["logits"].shape == (3, 6, 7) and not carry.inner_carry["h"].requires_grad


def test_halted_rows_restart_from_the_initial_state_and_the_others_continue():
    model = make().eval()
    batch = random_act_batch()
    carry, _ = model(model.initial_carry(batch), batch)
    carry.halted = torch.tensor([True, False, True])
    before = carry.inner_carry["h"].clone()
    model(carry, batch)
    init = model.inner.h_init.expand(7, 8)
    assert torch.equal(model.inner.seen[0], init) and torch.equal(model.inner.seen[2], init)
    assert torch.equal(model.inner.seen[1], before[1])


def test_latent_noise_is_added_to_the_declared_state():
    model = make().eval()
    batch = random_act_batch()
    noise = torch.full((3, 7, 8), 0.25)
    model(model.initial_carry(batch), batch, latent_noise=noise)
    assert torch.equal(model.inner.seen, model.inner.h_init.expand(3, 7, 8) + 0.25)


def test_input_embedding_prefix_positions_and_scale_by_hand():
    inner = make().eval().inner
    with torch.no_grad():
        inner.puzzle_emb.weights[3] = torch.arange(8.0)
    tokens = torch.tensor([[2, 0, 0, 0, 0, 1]], dtype=torch.int32)
    x = inner.input_embeddings(tokens, torch.tensor([3], dtype=torch.int32))
    positions = inner.embed_pos.embedding_weight
    table = inner.embed_tokens.embedding_weight
    # (prefix or token + learned position) / sqrt(2), all times sqrt(hidden) = sqrt(8)
    assert torch.allclose(x[0, 0], (torch.arange(8.0) + positions[0]) / math.sqrt(2) * math.sqrt(8))
    assert torch.allclose(x[0, 1], (table[2] + positions[1]) / math.sqrt(2) * math.sqrt(8))
    assert torch.allclose(x[0, 6], (table[1] + positions[6]) / math.sqrt(2) * math.sqrt(8))


def test_training_halts_on_q_halt_and_evaluation_runs_every_segment():
    head = ACTLossHead(make(), loss_type="softmax_cross_entropy")
    with torch.no_grad():  # q_halt = +3 for every row: "halt"; q_continue = -3
        head.model.inner.q_head.bias.copy_(torch.tensor([3.0, -3.0]))
    batch = random_act_batch()
    carry, _, _, _, all_halted = head(carry=head.initial_carry(batch), batch=batch)
    assert bool(all_halted) and carry.steps.tolist() == [1, 1, 1]  # training: halted after one segment
    head.eval()
    carry = head.initial_carry(batch)
    for expected in (1, 2, 3):
        carry, _, _, _, all_halted = head(carry=carry, batch=batch)
        assert carry.steps.tolist() == [expected] * 3 and bool(all_halted) == (expected == 3)


def test_exploration_draws_a_minimum_of_segments_from_the_seeded_generator():
    head = ACTLossHead(make(halt_exploration_prob=1.0, halt_max_steps=16), loss_type="softmax_cross_entropy")
    with torch.no_grad():
        head.model.inner.q_head.bias.copy_(torch.tensor([3.0, -3.0]))  # every row wants to halt at once
    batch = random_act_batch()
    carry = head.initial_carry(batch)
    generator = torch.Generator().manual_seed(0)  # the model's own: seeded with the config's seed (0)
    for _ in range(6):
        carry, _, _, _, _ = head(carry=carry, batch=batch)
        # Each segment, each row: explore with probability 1, then a minimum drawn uniformly from 2..16.
        explore = torch.rand(3, generator=generator) < 1.0
        minimum = torch.randint(2, 17, (3,), generator=generator, dtype=torch.int32) * explore
        assert carry.halted.tolist() == (carry.steps >= minimum).tolist()
