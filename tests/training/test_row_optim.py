"""Row-wise embedding optimisers: the same training as torch's sparse optimisers, rows outside a batch
untouched, row L2 on touched rows only; and the background batch thread."""

from __future__ import annotations

import io
import threading
from functools import partial

import pytest
import torch

from mtl.datasets.prepared import load_metadata, read_split
from mtl.models import build_model, row_kernels
from mtl.models.embedding import RowEmbedding, row_embeddings
from mtl.models.layers import FeatureBatch, FeatureInput, InputPlanner, PlannedBatch
from mtl.training.data import TensorSplit, prefetched
from mtl.training.optim import build_optimizers, scale_embedding_decay, use_sparse_embeddings
from mtl.training.row_optim import RowAdagrad, RowAdam
from tests.support.models import loss_curve, small_params


def esmm_losses(prepared_root, *, rows: bool, steps: int = 25) -> list[float]:
    """Per-step losses of a tiny ESMM: row mode + RowAdam, or torch's sparse gradients + SparseAdam."""
    metadata = load_metadata(prepared_root / "aliccp")
    split = TensorSplit.from_arrays(read_split(prepared_root / "aliccp", "train", metadata), metadata, "t")
    params = small_params("train.embedding_optimizer=adam", "train.embedding_weight_decay=0")  # as SparseAdam
    torch.manual_seed(0)
    model = build_model("esmm", metadata, params)
    use_sparse_embeddings(model, True, rows=rows)
    optimizers = build_optimizers(model, params.train, sparse=True)
    if not rows:  # the path before row mode: SparseAdam coalescing torch's sparse gradient
        optimizers[-1] = torch.optim.SparseAdam([model.input.embedding.weight], lr=params.train.embedding_lr)
    return loss_curve(model, model, optimizers, split, steps)


def test_row_adam_follows_the_sparse_adam_loss_curve(prepared_root, kernels):
    rows, sparse = esmm_losses(prepared_root, rows=True), esmm_losses(prepared_root, rows=False)
    assert rows[-1] < rows[0]  # it trains
    assert max(abs(a - b) for a, b in zip(rows, sparse)) < 1e-4


def lookups(table: RowEmbedding, ids_list: list[torch.Tensor], seed: int = 0) -> None:
    """A loss over several lookups of one table (repeated ids within and across them), backward."""
    generator = torch.Generator().manual_seed(seed)
    loss = sum(
        (table(ids) * torch.randn(*ids.shape, table.embedding_dim, generator=generator)).sum()
        for ids in ids_list
    )
    loss.backward()


def two_tables(rows: bool) -> RowEmbedding:
    torch.manual_seed(1)
    table = RowEmbedding(50, 4)
    table.capture_rows = rows
    return table


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_row_optimizers_match_torch_sparse_optimizers_and_leave_other_rows(optimizer, kernels):
    ids = [torch.tensor([[3, 7, 3], [9, 7, 11]]), torch.tensor([[11, 40]])]
    row_table, torch_table = two_tables(rows=True), two_tables(rows=False)
    before = row_table.weight.detach().clone()
    if optimizer == "adam":
        ours, theirs = RowAdam([row_table], lr=0.05), torch.optim.SparseAdam([torch_table.weight], lr=0.05)
    else:
        ours, theirs = RowAdagrad([row_table], lr=0.05), torch.optim.Adagrad([torch_table.weight], lr=0.05)
    for step in range(4):
        for table, opt in ((row_table, ours), (torch_table, theirs)):
            opt.zero_grad(set_to_none=True)
            lookups(table, ids, seed=step)
            opt.step()
    torch.testing.assert_close(row_table.weight, torch_table.weight)
    changed = set(torch.nonzero((row_table.weight != before).any(1)).flatten().tolist())
    assert changed == {3, 7, 9, 11, 40}


def test_row_weight_decay_shrinks_only_touched_rows(kernels):
    table = two_tables(rows=True)
    before = table.weight.detach().clone()
    optimizer = RowAdagrad([table], lr=0.1, weight_decay=0.5)
    ids = torch.tensor([2, 5])
    (table(ids) * 0.0).sum().backward()  # zero loss gradient: only the L2 term moves the rows
    optimizer.step()
    after = table.weight.detach()
    grad = 0.5 * before[ids]
    expected = before[ids] - 0.1 * grad / (grad.abs() + 1e-10)
    torch.testing.assert_close(after[ids], expected)
    untouched = torch.ones(50, dtype=torch.bool)
    untouched[ids] = False
    assert torch.equal(after[untouched], before[untouched])


def test_frequency_scaled_decay_pulls_each_row_by_decay_over_its_uses(kernels):
    """decay_by_uses: the L2 gradient of a touched row is (weight_decay + per_epoch / its uses) x the row,
    as torch's Adagrad computes it with that term added to the loss gradient; other rows stay put."""
    ids = [torch.tensor([[3, 7, 3], [9, 7, 11]]), torch.tensor([[11, 40]])]
    uses = torch.zeros(50, dtype=torch.int64)
    uses[[3, 7, 9, 11, 40]] = torch.tensor([1, 4, 2, 8, 0])  # 0: never seen in training, clamped to 1
    ours_table, torch_table = two_tables(rows=True), two_tables(rows=False)
    before = ours_table.weight.detach().clone()
    ours = RowAdagrad([ours_table], lr=0.05, weight_decay=0.01)
    ours.decay_by_uses(ours_table.weight, uses, 0.3)
    theirs = torch.optim.Adagrad([torch_table.weight], lr=0.05)
    for step in range(3):
        ours.zero_grad(set_to_none=True)
        lookups(ours_table, ids, seed=step)
        ours.step()
        theirs.zero_grad(set_to_none=True)
        lookups(torch_table, ids, seed=step)
        grad = torch_table.weight.grad.coalesce()
        rows = grad.indices()[0]
        decay = (0.01 + 0.3 / uses.clamp(min=1).float())[rows, None] * torch_table.weight.detach()[rows]
        torch_table.weight.grad = torch.sparse_coo_tensor(grad.indices(), grad.values() + decay, grad.shape)
        theirs.step()
    torch.testing.assert_close(ours_table.weight, torch_table.weight)
    changed = set(torch.nonzero((ours_table.weight != before).any(1)).flatten().tolist())
    assert changed == {3, 7, 9, 11, 40}
    # and the per-epoch term matters: the per-use decay alone ends elsewhere
    plain_table = two_tables(rows=True)
    plain = RowAdagrad([plain_table], lr=0.05, weight_decay=0.01)
    for step in range(3):
        plain.zero_grad(set_to_none=True)
        lookups(plain_table, ids, seed=step)
        plain.step()
    assert not torch.allclose(plain_table.weight[7], ours_table.weight[7])


def test_feature_input_counts_row_uses_without_padding(prepared_root):
    metadata = load_metadata(prepared_root / "aliccp")
    arrays = read_split(prepared_root / "aliccp", "train", metadata)
    split = TensorSplit.from_arrays(arrays, metadata, "t")
    model = build_model("esmm", metadata, small_params())
    uses = model.input.row_uses(split.features)
    assert uses.shape == (model.input.embedding.num_embeddings,)
    # every sparse field once per row, every multi-valued field as many times as its true length
    assert int(uses.sum()) == arrays.sparse.size + int(arrays.multi_lengths.sum())
    first = metadata.features.sparse[0]
    expected = torch.bincount(torch.as_tensor(arrays.sparse[:, 0]).long(), minlength=first.vocab_size)
    assert torch.equal(uses[: first.vocab_size], expected)
    # counted a few rows at a time (bounded temporaries), the same counts
    assert torch.equal(model.input.row_uses(split.features, slice_rows=7), uses)
    # on the features' device throughout (a CUDA split counts on the GPU): checked on the meta device
    on_meta = model.input.to("meta").row_uses(type(split.features)(*(t.to("meta") for t in split.features)))
    assert on_meta.device.type == "meta"
    assert on_meta.shape == uses.shape


@pytest.mark.parametrize("row_decay", [0.2, 0.0])
def test_row_decay_is_spread_over_each_rows_uses(prepared_root, row_decay):
    metadata = load_metadata(prepared_root / "aliccp")
    split = TensorSplit.from_arrays(read_split(prepared_root / "aliccp", "train", metadata), metadata, "t")
    params = small_params(f"train.embedding_row_decay={row_decay}", "train.embedding_weight_decay=0.01")
    model = build_model("esmm", metadata, params)
    use_sparse_embeddings(model, True, rows=True)
    optimizers = build_optimizers(model, params.train, sparse=True)
    scale_embedding_decay(model, optimizers, params.train, [split.features], len(split), sparse=True)
    row_optimizer = optimizers[-1]
    if not row_decay:  # the per-use L2 alone, the group's weight_decay
        assert row_optimizer.row_decay == {}
    else:
        uses = model.input.row_uses(split.features)
        decay = row_optimizer.row_decay[id(model.input.embedding.weight)]
        torch.testing.assert_close(decay, 0.01 + row_decay / uses.clamp(min=1).float())
    # dense gradients decay every row each step: + row_decay / steps per epoch, the same pull per epoch
    dense_model = build_model("esmm", metadata, params)
    dense = build_optimizers(dense_model, params.train, sparse=False)
    scale_embedding_decay(dense_model, dense, params.train, [split.features], len(split), sparse=False)
    steps = -(-len(split) // params.train.batch_size)
    table_decay = [g["weight_decay"] for o in dense for g in o.param_groups
                   if any(p is dense_model.input.embedding.weight for p in g["params"])]  # fmt: skip
    assert table_decay == [pytest.approx(0.01 + row_decay / steps)]


def test_row_optimizer_state_round_trips_through_a_checkpoint():
    table = two_tables(rows=True)
    optimizer = RowAdam([table], lr=0.05)
    lookups(table, [torch.tensor([1, 2, 2])])
    optimizer.step()
    copy = two_tables(rows=True)
    copy.load_state_dict(table.state_dict())
    restored = RowAdam([copy], lr=0.05)
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)
    saved.seek(0)
    restored.load_state_dict(torch.load(saved))
    for t, opt in ((table, optimizer), (copy, restored)):
        lookups(t, [torch.tensor([2, 4])], seed=5)
        opt.step()
    torch.testing.assert_close(copy.weight, table.weight)


def test_prefetched_yields_in_order_and_reraises_the_producer_error():
    assert list(prefetched(iter(range(20)))) == list(range(20))

    def failing():
        yield 1
        raise ValueError("bad chunk")

    with pytest.raises(ValueError, match="bad chunk"):
        list(prefetched(failing()))
    stream = prefetched(iter(range(1000)))
    assert next(stream) == 0
    stream.close()  # a consumer that stops early ends the thread (close joins it)


def test_prefetched_gathers_on_one_thread_and_leaves_the_step_its_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:

        def threads_seen():
            for _ in range(3):
                yield torch.get_num_threads()

        assert list(prefetched(threads_seen())) == [1, 1, 1]
        assert torch.get_num_threads() == 2  # the consumer's (the training step's) setting is its own
        # and a thread started afterwards gets the consumer's default back, not the batch thread's 1
        later: list[int] = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [2]
    finally:
        torch.set_num_threads(before)


def test_gather_rows_is_index_select():
    table = torch.randn(1000, 5)
    ids = torch.randperm(1000)[:300]  # random order, as a batch's distinct rows come
    torch.testing.assert_close(
        row_kernels.gather_rows(table, ids), table.index_select(0, ids), rtol=0, atol=0
    )
    assert row_kernels.gather_rows(table, ids[:0]).shape == (0, 5)


@pytest.mark.parametrize("model_name", ["mmoe", "single_task"])
def test_a_planned_batch_steps_as_the_unplanned_one_without_redoing_the_plan(
    prepared_root, kernels, model_name
):
    metadata = load_metadata(prepared_root / "aliccp")
    split = TensorSplit.from_arrays(read_split(prepared_root / "aliccp", "train", metadata), metadata, "t")
    params = small_params()
    curves, tables = [], []
    for planned in (False, True):
        torch.manual_seed(0)
        model = build_model(model_name, metadata, params).train()
        use_sparse_embeddings(model, True, rows=True)
        optimizers = build_optimizers(model, params.train, sparse=True)
        forward = model
        with pytest.MonkeyPatch.context() as patch:
            if planned:
                planner = InputPlanner(model)
                assert len(planner.inputs) == 1  # single_task's per-task inputs share one layout and plan
                plans = [planner(split.slice(step * 200, step * 200 + 200).features) for step in range(6)]
                assert all(isinstance(p, PlannedBatch) for p in plans)
                assert all(plan.distinct is not None for p in plans for plan in p.plans.values())
                (marker,) = planner.markers.values()  # the planner's own scratch, left clean
                assert bool((marker == -1).all())
                for name in ("global_ids", "_slot_weights"):
                    patch.setattr(FeatureInput, name, _fail)
                patch.setattr(RowEmbedding, "distinct_rows", _fail)
                forward = partial(_planned_forward, model, iter(plans))
            curves.append(loss_curve(model, forward, optimizers, split, 6))
        tables.append([t.weight.detach().clone() for t in row_embeddings(model)])
        if planned:  # the step never needed a scratch of its own
            assert all(t.marker is None for t in row_embeddings(model))
    assert curves[0] == curves[1]
    assert all(torch.equal(a, b) for a, b in zip(*tables))


def _planned_forward(model, plans, features):
    """The model on the next planned batch (the same rows as ``features``, planned beforehand)."""
    planned = next(plans)
    assert torch.equal(planned.sparse, features.sparse)
    return model(planned)


def _fail(*args, **kwargs):
    raise AssertionError("recomputed what the plan holds")


def test_a_batch_derived_from_a_planned_one_is_planned_afresh(prepared_root):
    metadata = load_metadata(prepared_root / "aliccp")
    split = TensorSplit.from_arrays(read_split(prepared_root / "aliccp", "train", metadata), metadata, "t")
    model = build_model("esmm", metadata, small_params()).eval()
    planned = InputPlanner(model)(split.slice(0, 50).features)
    assert planned.plans
    lengths = planned.multi_lengths.clone()
    lengths[:, 0] = 0  # another batch: its plan would differ
    derived = {
        "slice": FeatureBatch(*(t[:20] for t in planned)),
        "_replace": planned._replace(multi_lengths=lengths),
        "tree_map": torch.utils._pytree.tree_map(lambda t: t[:20], planned),
    }
    with torch.no_grad():
        for how, batch in derived.items():
            assert not getattr(batch, "plans", None), how
            fresh = FeatureBatch(*(t.clone() for t in batch))
            assert torch.equal(model.input(batch), model.input(fresh)), how


def test_a_plan_for_another_dtype_is_not_used(prepared_root):
    metadata = load_metadata(prepared_root / "aliccp")
    split = TensorSplit.from_arrays(read_split(prepared_root / "aliccp", "train", metadata), metadata, "t")
    model = build_model("esmm", metadata, small_params()).eval()
    planned = InputPlanner(model)(split.slice(0, 50).features)  # float32 slot weights
    model.double()
    with torch.no_grad():
        assert torch.equal(model.input(planned), model.input(FeatureBatch(*planned)))
