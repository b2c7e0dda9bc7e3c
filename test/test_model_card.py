"""The model card keeps what it cannot recompute: the training-data section of the card the weights already have."""

from __future__ import annotations

from pathlib import Path

from qcraft_world_model.train.model_card import earlier_section


def test_an_earlier_cards_section_is_read_up_to_the_next_heading(tmp_path: Path) -> None:
    card = tmp_path / "MODEL_CARD.md"
    assert earlier_section(card, "## Training data") is None  # no card
    card.write_text("# Model card\n\n## Training data\n\n- `train`: 4400 clips\n- clips per map: a 1\n\n"
                    "## Training\n\n- command: `x`\n")
    assert earlier_section(card, "## Training data") == ["- `train`: 4400 clips", "- clips per map: a 1"]
    assert earlier_section(card, "## Evaluation") is None
