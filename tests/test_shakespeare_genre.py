"""shakespeare-genre: speeches labelled by their play's genre folder, plays held out by play."""

import json

import pytest
import torch

from treadmill.cli import main
from treadmill.data.tasks import get_task
from treadmill.data.tasks.lm import build_lm_shakespeare
from treadmill.data.tasks.shakespeare import PLAY_FOLDERS, genre_of, play_files
from treadmill.data.tasks.shakespeare_genre import (
    LABELS,
    collate_classification,
    shakespeare_genre_sizes,
    speeches,
    split_plays,
)
from treadmill.validation import ConfigError


@pytest.fixture(scope="module")
def task():
    return get_task("shakespeare-genre")


def test_no_play_is_in_two_splits_and_every_genre_is_in_every_split(task):
    plays = task.metadata["plays"]
    train, valid, test = (set(plays[s]) for s in ("train", "valid", "test"))
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert len(train | valid | test) == 38 and len(valid) == len(test) == 6
    for split in ("train", "valid", "test"):
        assert set(task.fields[split]["genre"]) == set(PLAY_FOLDERS)  # stratified: every label in every split
        assert set(task.fields[split]["play"]) == set(plays[split])   # examples come from their split's plays


def test_labels_are_the_genre_folder_of_the_speechs_play(task):
    genre = {p.stem: genre_of(p) for p in play_files()}
    assert LABELS == ("comedies", "histories", "problems", "roman", "romances", "tragedies")
    for split, dataset in task.splits.items():
        plays = task.fields[split]["play"]
        assert len(dataset) == len(plays) == shakespeare_genre_sizes()[split]
        assert all(LABELS[dataset[i]["label"]] == genre[plays[i]] for i in range(len(dataset)))
    counts = torch.bincount(torch.tensor(task.splits["train"].labels), minlength=6)
    assert (counts > 0).all()


def test_a_known_speech_decodes_to_its_text_with_its_label(task):
    split = next(s for s, plays in task.metadata["plays"].items() if "macbeth" in plays)
    dataset, plays = task.splits[split], task.fields[split]["play"]
    first = plays.index("macbeth")
    texts = [task.src_tokenizer.decode(dataset[i]["src"]) for i in range(first, first + 40)]
    speech = next(t for t in texts if t.startswith("When the hurlyburly"))
    assert speech == "When the hurlyburly's done,\nWhen the battle's lost and won."  # no speaker name, no markup
    assert LABELS[dataset[first + texts.index(speech)]["label"]] == "tragedies"


def test_min_and_max_chars_bound_the_speeches():
    macbeth = next(p for p in play_files() if p.stem == "macbeth")
    everything = speeches(macbeth)
    kept = speeches(macbeth, min_chars=40, max_chars=100)
    assert any(len(s.text) < 40 for s in everything)
    assert all(40 <= len(s.text) <= 100 for s in kept)
    assert len(kept) == sum(len(s.text) >= 40 for s in everything)


def test_split_by_seed_stays_stratified_by_play():
    paths = play_files()
    a, b = split_plays(paths, seed=0), split_plays(paths, seed=1)
    assert a != b
    for split in (a, b):
        assert sorted(genre_of(p) for p in split["test"]) == sorted(PLAY_FOLDERS)
        assert sorted(map(str, split["train"] + split["valid"] + split["test"])) == sorted(map(str, paths))


def test_vocabulary_is_lm_shakespeares_shared_one(task, tmp_path):
    assert task.src_tokenizer.to_dict() == build_lm_shakespeare(genres=["comedies"], cache_dir=str(tmp_path)).tgt_tokenizer.to_dict()
    assert task.model_sizes()["num_labels"] == 6


def test_collate_pads_and_masks():
    batch = collate_classification([{"src": [5, 6, 7], "label": 2, "index": 0}, {"src": [9], "label": 5, "index": 1}])
    assert batch["src"].tolist() == [[5, 6, 7], [9, 0, 0]]
    assert batch["src_padding_mask"].tolist() == [[False, False, False], [False, True, True]]
    assert batch["label"].tolist() == [2, 5]


@pytest.mark.parametrize("options", [{"min_chars": 0}, {"max_chars": 10}, {"seed": "a"}])
def test_bad_options_are_named_errors(options):
    with pytest.raises(ConfigError, match=next(iter(options))):
        get_task("shakespeare-genre", **options)


def test_train_refuses_the_classification_task_without_a_head_with_exit_2(tmp_path, capsys):
    path = tmp_path / "genre.yaml"
    path.write_text(json.dumps({"task": {"name": "shakespeare-genre"}, "model": {"name": "gpt"}}))
    assert main(["train", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert "classification task: give the model a classification head" in capsys.readouterr().err
