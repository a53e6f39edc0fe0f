import pytest
import torch

from models.sparse_embedding import (
    CastedSparseEmbedding,
    CastedSparseEmbeddingSignSGD_Distributed,
)


def make_embedding():
    emb = CastedSparseEmbedding(num_embeddings=6, embedding_dim=3, batch_size=4, init_std=1.0,
                                cast_to=torch.float32)
    with torch.no_grad():
        emb.weights.copy_(torch.arange(18, dtype=torch.float32).view(6, 3) + 1)
    return emb


def test_table_is_a_buffer_not_a_parameter():
    emb = make_embedding()
    assert list(emb.parameters()) == []
    assert set(emb.state_dict()) == {"weights"}


def test_signsgd_updates_touched_rows_with_summed_gradient_sign():
    emb = make_embedding()
    before = emb.weights.clone()
    ids = torch.tensor([1, 3, 1, 0], dtype=torch.int32)
    out = emb(ids)
    # Row 1 appears twice with gradients that sum to a *negative* value in column 0 although one is positive.
    upstream = torch.tensor([[2.0, -1.0, 0.0], [1.0, 1.0, -1.0], [-3.0, -1.0, 0.5], [0.0, 0.5, -0.5]])
    (out * upstream).sum().backward()
    lr, wd = 0.1, 0.5
    opt = CastedSparseEmbeddingSignSGD_Distributed(emb.buffers(), world_size=1, lr=lr, weight_decay=wd)
    opt.step()

    decay = 1 - lr * wd
    expected = before.clone()
    expected[1] = before[1] * decay - lr * torch.tensor([-1.0, -1.0, 1.0])
    expected[3] = before[3] * decay - lr * torch.tensor([1.0, 1.0, -1.0])
    expected[0] = before[0] * decay - lr * torch.tensor([0.0, 1.0, -1.0])
    assert torch.allclose(emb.weights, expected, atol=1e-6)
    # Untouched rows are exactly unchanged (no decay either).
    assert torch.equal(emb.weights[[2, 4, 5]], before[[2, 4, 5]])


def test_eval_reads_table_directly():
    emb = make_embedding().eval()
    assert torch.equal(emb(torch.tensor([5, 2])), emb.weights[[5, 2]])


def test_wrong_batch_size_is_reported():
    # A batch must fill the local rows in whole micro-batches: 3 rows never fill 4, 2 rows at row 3 overflow them.
    with pytest.raises(ValueError, match="batch_size=4"):
        make_embedding()(torch.tensor([0, 1, 2], dtype=torch.int32))
    emb = make_embedding()
    emb.row_offset = 3
    with pytest.raises(ValueError, match="at row 3"):
        emb(torch.tensor([0, 1], dtype=torch.int32))


def test_micro_batches_fill_the_rows_of_one_update():
    """Two micro-batches of 2 rows (gradient accumulation) give the update one batch of 4 gives, bitwise."""
    ids = torch.tensor([1, 3, 1, 0], dtype=torch.int32)
    upstream = torch.tensor([[2.0, -1.0, 0.0], [1.0, 1.0, -1.0], [-3.0, -1.0, 0.5], [0.0, 0.5, -0.5]])
    whole, parts = make_embedding(), make_embedding()
    (whole(ids) * upstream).sum().backward()
    for k in (0, 1):
        parts.row_offset = 2 * k
        (parts(ids[2 * k:2 * k + 2]) * upstream[2 * k:2 * k + 2]).sum().backward()
    for emb in (whole, parts):
        CastedSparseEmbeddingSignSGD_Distributed(emb.buffers(), world_size=1, lr=0.1, weight_decay=0.5).step()
    assert torch.equal(parts.local_ids, whole.local_ids) and torch.equal(parts.weights, whole.weights)


def test_moved_module_keeps_leaf_local_weights():
    emb = make_embedding().to(torch.float64)
    assert emb.local_weights.is_leaf and emb.local_weights.requires_grad


@pytest.mark.parametrize("seed, num_ids", [(0, 3), (1, 1), (2, 50)])
def test_update_matches_a_per_id_reference_on_random_batches(seed, num_ids):
    """Many repeated ids, rows with zero gradient, all rows on one id: the static-shape sums equal a dict's."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(num_ids + 4, 5, generator=g)
    ids = torch.randint(0, num_ids, (32,), generator=g, dtype=torch.int32)
    grads = torch.randn(32, 5, generator=g).round()  # integer-valued: sums are exact, signs unambiguous
    grads[::7] = 0.0
    lr, wd = 0.05, 0.3

    expected = table.clone()
    for i in sorted(set(ids.tolist())):
        total = grads[ids == i].sum(0)
        expected[i] = table[i] * (1 - lr * wd) - lr * torch.sign(total)

    weights = table.clone()
    from models.sparse_embedding import _sparse_signsgd_update
    _sparse_signsgd_update(grads, ids, weights, lr, wd, world_size=1)
    assert torch.allclose(weights, expected, atol=1e-6, rtol=0)
    untouched = [i for i in range(table.shape[0]) if i not in set(ids.tolist())]
    assert torch.equal(weights[untouched], table[untouched])
