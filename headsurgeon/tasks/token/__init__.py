"""Token classification (NER): one tag per word, tags in a scheme (BIO, BIOES, BILOU, IO).

- :mod:`.schemes`: tagging schemes, entity types and their tags (the on-disk surgery uses them);
- :mod:`.data`: CoNLL and JSONL readers (:class:`~.data.Sentence`, :func:`~.data.read_sentences`);
- :mod:`.words`: words ↔ subwords (a word's prediction is its first subword's);
- :mod:`.gate`: the entity gate (old-type entity F1, strict; :func:`~.gate.check_old_types`);
- :mod:`.task`: :class:`~.task.TokenTask`, what ``train``/``check``/``sweep`` ask of this task.

Nothing is imported here: ``headsurgeon.labels`` imports :mod:`.schemes` on the on-disk path.
"""
