//! The alpha events of a span (`meta_supervisor/tally/alpha_events.py`): `alphatrace.alpha.signal`
//! counted by symbol and direction and kept for scoring, `alphatrace.alpha.signal.invalid` counted by
//! reason, kill-switch read errors counted; an old file's `alpha.signal`, ... read under today's names
//! (`legacy.rs`). Part of `part::Aggregator`.

use crate::legacy;
use crate::names::pair_key;
use crate::part::{
    decline, Aggregator, DAY_ALPHA, DAY_ALPHA_INVALID, DAY_BITS, MAX_DISTINCT, MAX_HORIZON, MAX_LABEL, MAX_TIME_NS, NO_DIRECTION,
    NO_SYMBOL, OTHER_LABEL, R, TRADABLE_SHIFT,
};
use crate::schema::{AnyValue, Event, Span};
use crate::tallies::Row;
use crate::values::{as_float, as_str, int_of, label, span_ids, Ids};
use std::borrow::Cow;

impl Aggregator<'_, '_> {
    /// `AlphaEvents._events`: the alpha events of a span of agent `index`, on day `day`.
    pub(crate) fn events(&mut self, index: usize, span: &Span, day: i64, fp: u64) -> R<()> {
        let mut ids: Option<Ids> = None;
        for (position, event) in span.events.iter().enumerate() {
            let old = legacy::current(&event.name);
            match old.unwrap_or(&event.name) {
                "alphatrace.alpha.signal" => self.signal(index, span, event, old.is_some(), position, day, fp, &mut ids)?,
                "alphatrace.alpha.signal.invalid" => {
                    let mut reason = None;
                    for kv in &event.attributes {
                        if event_key(&kv.key, old.is_some()) == "alphatrace.alpha.invalid.reason" {
                            reason = as_str(kv.value.as_ref());
                        }
                    }
                    let tally = &mut self.agents[index];
                    let mut key = label(reason, "(no reason given)", 300);
                    if !tally.invalid_reasons.contains(&*key) && tally.invalid_reasons.len() >= 100 {
                        key = Cow::Borrowed(OTHER_LABEL);
                    }
                    *tally.invalid_reasons.entry(&*key, || key.to_string(), || 0) += 1;
                    tally.day_runs.entry(&day, || day, || [0; 5])[DAY_ALPHA_INVALID] += 1;
                }
                "alphatrace.kill_switch.error" => self.agents[index].kill_switch_errors += 1,
                _ => {}
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn signal(
        &mut self,
        index: usize,
        span: &Span,
        event: &Event,
        old: bool,
        position: usize,
        day_row: i64,
        fp: u64,
        ids: &mut Option<Ids>,
    ) -> R<()> {
        // the first occurrence of each key counts (signal_store.symbol_direction / signal_values)
        let mut found: [Option<Option<&AnyValue>>; 7] = [None; 7];
        for kv in &event.attributes {
            let slot = match event_key(&kv.key, old) {
                "alphatrace.alpha.symbol" => 0,
                "alphatrace.alpha.direction" => 1,
                "alphatrace.alpha.prob_up" => 2,
                "alphatrace.alpha.score_final" => 3,
                "alphatrace.alpha.horizon" => 4,
                "alphatrace.alpha.as_of" => 5,
                "alphatrace.alpha.tradable" => 6,
                _ => continue,
            };
            if found[slot].is_none() {
                found[slot] = Some(kv.value.as_ref());
            }
        }
        let value = |slot: usize| found[slot].flatten();
        let symbol = as_str(value(0));
        let direction = as_str(value(1));
        let tally = &mut self.agents[index];
        let names = &mut self.signal_names;
        let symbol_label = label(symbol, NO_SYMBOL, MAX_LABEL);
        let direction_label = label(direction, NO_DIRECTION, 40);
        // the agent's table keyed by the ids of the names (`names.rs`): a name without an id is in no table
        let symbol_name = names.symbols.get(&symbol_label);
        let slot = match (symbol_name, names.directions.get(&direction_label)) {
            (Some(s), Some(d)) => tally.alpha.slot(pair_key(s, d)),
            _ => None,
        };
        let symbol_name = match slot {
            Some(slot) => {
                tally.alpha.items[slot].1 += 1;
                symbol_name.unwrap()
            }
            None => {
                let direction_label = if tally.alpha.len() >= MAX_DISTINCT {
                    Cow::Borrowed(OTHER_LABEL)
                } else {
                    direction_label
                };
                let key = pair_key(names.symbols.id(&symbol_label), names.directions.id(&direction_label));
                *tally
                    .alpha
                    .entry(key, || (symbol_label.to_string(), direction_label.to_string()), || 0) += 1;
                (key >> 32) as u32
            }
        };
        tally.day_runs.entry(&day_row, || day_row, || [0; 5])[DAY_ALPHA] += 1;
        if tally.signals.is_none() {
            return Ok(());
        }
        let helpers = &mut self.helpers;
        let usable = 'usable: {
            // signal_values(), for an event with six attributes at least
            if event.attributes.len() < 6 {
                break 'usable None;
            }
            let (Some(prob_up), Some(score)) = (as_float(value(2), helpers)?, as_float(value(3), helpers)?) else {
                break 'usable None;
            };
            let (Some(horizon), Some(as_of)) = (value(4), value(5)) else {
                break 'usable None;
            };
            let (Some(horizon), Some(as_of)) = (horizon.int.as_ref(), as_str(Some(as_of))) else {
                break 'usable None;
            };
            let tradable = value(6).and_then(|v| v.boolean);
            let code = match direction {
                Some("up") => 0u8,
                Some("down") => 1,
                Some("flat") => 2,
                _ => break 'usable None,
            };
            if symbol.is_none_or(str::is_empty) || !(0.0..=1.0).contains(&prob_up) || !score.is_finite() {
                break 'usable None;
            }
            let Some(horizon) = int_of(horizon, helpers)? else {
                break 'usable None;
            };
            if !(1..=MAX_HORIZON).contains(&horizon) {
                break 'usable None;
            }
            let day = helpers.day_ordinal(as_of)?;
            if day == 0 {
                break 'usable None;
            }
            if !(0..(1i64 << DAY_BITS)).contains(&day) {
                return decline("an as-of day beyond the key's bits");
            }
            let time_ns = int_of(&event.time, helpers)?.unwrap_or(0);
            let time_ns = if (0..=MAX_TIME_NS).contains(&time_ns) { time_ns as u64 } else { 0 };
            let flags = code
                | (match tradable {
                    None => 0u8,
                    Some(false) => 1,
                    Some(true) => 2,
                } << TRADABLE_SHIFT);
            Some((prob_up, score, horizon as i64, day as u64, time_ns, flags))
        };
        let store = self.agents[index].signals.as_mut().unwrap();
        let Some((prob_up, score, horizon, day, time_ns, flags)) = usable else {
            store.unusable += 1;
            return Ok(());
        };
        if ids.is_none() {
            *ids = Some(span_ids(&span.trace_id, &span.span_id, &self.helpers)?);
        }
        let (raw, odd) = match ids.as_ref().unwrap() {
            Ids::Raw(raw) => (*raw, None),
            Ids::Odd(t, s) => ([0u8; 24], Some((t.clone(), s.clone()))),
        };
        let store = self.agents[index].signals.as_mut().unwrap();
        let symbol_id = store.symbol_id(symbol_name, &symbol_label, &mut self.signal_names.symbols);
        store.total += 1;
        let row = Row {
            key: symbol_id << DAY_BITS | day,
            time_ns,
            fp,
            position: position as u32,
            prob_up,
            score,
            horizon,
            flags,
            ids: raw,
        };
        store.put(row, odd);
        Ok(())
    }
}

/// An attribute key of an event, under today's name when the event is an old one (`legacy_names.upgrade_event`).
fn event_key(key: &str, old_event: bool) -> &str {
    if old_event {
        legacy::current(key).unwrap_or(key)
    } else {
        key
    }
}
