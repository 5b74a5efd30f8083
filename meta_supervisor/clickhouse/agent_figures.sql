-- The meta report's per-agent figures (docs/report-schema.md, `agents.<name>`) as SQL over the
-- table the collector's `clickhouse` exporter (contrib v0.161.0) writes: `otel_traces`, one row per
-- span, every attribute value as text.  docs/clickhouse.md says what equals what and what is left out.
--
-- Placeholders, filled by meta_supervisor/clickhouse/queries.py (`python -m meta_supervisor.clickhouse sql`):
--   $$table          the table, quoted: `otel`.`otel_traces`
--   $$price_models   the price table's models (services/llm_prices.json or ALPHATRACE_PRICE_TABLE), an array of strings
--   $$price_input    USD per 1M uncached input tokens, in the same order (Float64 literals)
--   $$price_cached   USD per 1M cached input tokens
--   $$price_output   USD per 1M output tokens
--   $$legacy_old     names of before the project namespace (otel/semconv.py LEGACY_NAMES), an array of strings
--   $$legacy_new     their names now, in the same order
--   $$supervisor_span_prefixes  how the supervisor's span names begin, now and before (the report counts them apart)
-- (In this file a literal dollar sign is written twice.)
--
-- Rules reproduced from the report (and where they live there):
--   * a span is counted once per (TraceId, SpanId): the exporter's retries store it twice
--     (a span without ids once per content, as the report does);
--   * a file written before the project namespace is read under today's names (`agent.run_id` as
--     `alphatrace.run.id`, `alpha.signal` as `alphatrace.alpha.signal`, ...): keys, event names and
--     event keys are renamed as the spans are read;
--   * runs are `invoke_agent` spans; outcome `alphatrace.run.outcome`, else `error` when the status is
--     Error, else `ok`; latency = Duration of `ok`/`error` runs with a start time and end >= start;
--   * percentiles by linear interpolation between closest ranks (numpy's default;
--     meta_supervisor/report_agents.py `percentile`), on the latencies in ns;
--   * LLM calls are `chat`, `text_completion`, `generate_content` and `embeddings` spans; model, tokens:
--     the first key present; tokens clamped as the report does; cost priced from token sums per
--     model (never per call), simulated calls (resource `alphatrace.llm.simulated`) never priced;
--   * figures rounded as Python's round() does (half-even on the exact binary value, which
--     ClickHouse's round() is not): latencies to 3 decimals of a ms, costs to 8, rates to 6.
WITH
    -- One row per span, under today's names.
    spans AS (
        SELECT
            TraceId, SpanId, SpanName, StatusCode, Timestamp, Duration,
            mapApply((k, v) -> (transform(toString(k), $legacy_old, $legacy_new, toString(k)), v), SpanAttributes) AS attrs,
            ResourceAttributes AS resource,
            arrayMap(n -> transform(n, $legacy_old, $legacy_new, n), Events.Name) AS event_names,
            arrayMap(m -> mapApply((k, v) -> (transform(toString(k), $legacy_old, $legacy_new, toString(k)), v), m), Events.Attributes) AS event_attrs,
            attrs['gen_ai.operation.name'] AS operation
        FROM $table
        LIMIT 1 BY TraceId, SpanId,
            if(TraceId = '' OR SpanId = '', cityHash64(Timestamp, Duration, SpanName, StatusCode, StatusMessage, SpanAttributes, Events.Name), 0)
    ),
    -- Agent runs (root spans).
    runs AS (
        SELECT
            TraceId,
            multiIf(
                attrs['gen_ai.agent.name'] != '', attrs['gen_ai.agent.name'],
                attrs['agent.name'] != '', attrs['agent.name'],
                attrs['traceloop.entity.name'] != '', attrs['traceloop.entity.name'],
                startsWith(SpanName, 'invoke_agent ') AND length(SpanName) > 13, substring(SpanName, 14),
                '(unknown agent)') AS agent,
            if(attrs['alphatrace.run.id'] != '', attrs['alphatrace.run.id'], TraceId) AS run_key,
            attrs['alphatrace.run.outcome'] AS written_outcome,
            if(written_outcome != '', written_outcome, if(StatusCode = 'Error', 'error', 'ok')) AS outcome,
            outcome IN ('ok', 'error') AS is_run,
            toUnixTimestamp64Nano(Timestamp) AS start_ns,
            -- Duration is end - start as UInt64: a missing or earlier end wraps past 2^63
            start_ns > 0 AND Duration <= 9223372036854775807 AS timed,
            Duration,
            event_names, event_attrs
        FROM spans
        WHERE operation = 'invoke_agent'
    ),
    run_figures AS (
        SELECT
            agent,
            countIf(is_run) AS runs,
            countIf(outcome = 'error') AS errors,
            countIf(outcome = 'killed') AS skipped_killed,
            countIf(outcome = 'stale_data') AS skipped_stale_data,
            sumMap(map(outcome, toUInt64(1))) AS outcomes,
            countIf(written_outcome = '') AS runs_without_outcome,
            countIf(is_run AND NOT timed) AS runs_without_latency,
            arraySort(groupArrayIf(Duration, is_run AND timed)) AS latencies_ns,
            minIf(start_ns, is_run AND start_ns > 0) AS first_start_ns,
            maxIf(start_ns, is_run AND start_ns > 0) AS last_start_ns,
            sum(countEqual(event_names, 'alphatrace.kill_switch.error')) AS kill_switch_errors_seen
        FROM runs
        GROUP BY agent
    ),
    -- Each run's agent, for LLM spans that do not name theirs (other instrumentations' children).
    run_agents AS (
        SELECT run_key, min(agent) AS run_agent FROM runs GROUP BY run_key
    ),
    llm AS (
        SELECT
            multiIf(attrs['gen_ai.agent.name'] != '', attrs['gen_ai.agent.name'], run_agent != '', run_agent, '(unknown agent)') AS agent,
            operation,
            multiIf(
                mapContains(attrs, 'gen_ai.response.model'), attrs['gen_ai.response.model'],
                mapContains(attrs, 'gen_ai.request.model'), attrs['gen_ai.request.model'],
                mapContains(attrs, 'llm.response.model_name'), attrs['llm.response.model_name'],
                mapContains(attrs, 'llm.model_name'), attrs['llm.model_name'],
                mapContains(attrs, 'llm.request.model_name'), attrs['llm.request.model_name'],
                mapContains(attrs, 'embedding.model_name'), attrs['embedding.model_name'],
                '') AS model_value,
            multiIf(model_value = '', '(unknown model)',
                    lengthUTF8(model_value) > 200, concat(substringUTF8(model_value, 1, 199), '…'),
                    model_value) AS model,
            toInt128OrZero(multiIf(
                mapContains(attrs, 'gen_ai.usage.input_tokens'), attrs['gen_ai.usage.input_tokens'],
                mapContains(attrs, 'gen_ai.usage.prompt_tokens'), attrs['gen_ai.usage.prompt_tokens'],
                attrs['llm.token_count.prompt'])) AS read_in,
            toInt128OrZero(multiIf(
                mapContains(attrs, 'gen_ai.usage.output_tokens'), attrs['gen_ai.usage.output_tokens'],
                mapContains(attrs, 'gen_ai.usage.completion_tokens'), attrs['gen_ai.usage.completion_tokens'],
                attrs['llm.token_count.completion'])) AS read_out,
            toInt128OrZero(multiIf(
                mapContains(attrs, 'gen_ai.usage.cache_read.input_tokens'), attrs['gen_ai.usage.cache_read.input_tokens'],
                mapContains(attrs, 'gen_ai.usage.cache_read_input_tokens'), attrs['gen_ai.usage.cache_read_input_tokens'],
                attrs['llm.token_count.prompt_details.cache_read'])) AS read_cached,
            -- negative counts, more cached than input, or over 10^15 (a broken value): counted and clamped
            read_in < 0 OR read_out < 0 OR read_cached < 0 OR read_cached > read_in OR greatest(read_in, read_out) > 1000000000000000 AS bad,
            toInt64(if(read_in >= 0 AND read_in <= 1000000000000000, read_in, 0)) AS tokens_in,
            toInt64(if(read_out >= 0 AND read_out <= 1000000000000000, read_out, 0)) AS tokens_out,
            toInt64(least(greatest(read_cached, 0), tokens_in)) AS tokens_cached,
            lower(trimBoth(resource['alphatrace.llm.simulated'])) IN ('true', '1') AS simulated,
            StatusCode = 'Error' AS error
        FROM spans
        LEFT JOIN run_agents ON run_agents.run_key = if(spans.attrs['alphatrace.run.id'] != '', spans.attrs['alphatrace.run.id'], spans.TraceId)
        WHERE operation IN ('chat', 'text_completion', 'generate_content', 'embeddings')
    ),
    llm_models AS (
        WITH
            $price_models AS price_models,
            $price_input AS price_input,
            $price_cached AS price_cached,
            $price_output AS price_output
        SELECT
            agent, model,
            count() AS calls,
            countIf(error) AS errors,
            countIf(simulated) AS simulated_calls,
            sum(tokens_in) AS model_tokens_in,
            sum(tokens_out) AS model_tokens_out,
            sum(tokens_cached) AS model_tokens_cached,
            countIf(bad) AS bad_token_values,
            sumMap(map(operation, toUInt64(1))) AS operations,
            sumIf(tokens_in - tokens_cached, NOT simulated) AS priced_uncached,
            sumIf(tokens_cached, NOT simulated) AS priced_cached,
            sumIf(tokens_out, NOT simulated) AS priced_out,
            calls > simulated_calls AS real_calls,
            -- the model's price, else its base name's for a dated snapshot (gpt-4o-mini-2024-07-18)
            if(indexOf(price_models, model) > 0, indexOf(price_models, model),
               indexOf(price_models, replaceRegexpOne(model, '-[0-9]{4}-[0-9]{2}-[0-9]{2}$$', ''))) AS price_index,
            real_calls AND price_index > 0 AS priced,
            (toFloat64(priced_uncached) * price_input[price_index] + toFloat64(priced_cached) * price_cached[price_index])
                + toFloat64(priced_out) * price_output[price_index] AS micro_usd
        FROM llm
        GROUP BY agent, model
    ),
    llm_figures AS (
        SELECT
            agent,
            sum(calls) AS llm_calls,
            sum(errors) AS llm_errors,
            sum(simulated_calls) AS simulated_llm_calls,
            sumIf(calls - simulated_calls, real_calls AND NOT priced) AS unpriced_llm_calls,
            arraySort(groupArrayIf(model, real_calls AND NOT priced)) AS unpriced_models,
            sum(model_tokens_in) AS tokens_in,
            sum(model_tokens_out) AS tokens_out,
            sum(model_tokens_cached) AS tokens_cached,
            sum(bad_token_values) AS bad_token_values,
            -- each model's cost, in model-name order (the report adds its rounded model costs in that order)
            arrayMap(pair -> pair.2, arraySort(pair -> pair.1, groupArrayIf((model, micro_usd / 1000000), priced))) AS model_costs,
            sumMap(operations) AS llm_operations
        FROM llm_models
        GROUP BY agent
    ),
    -- alphatrace.alpha.signal / .invalid events: on runs, and on other spans naming their agent.
    event_spans AS (
        SELECT agent, event_names, event_attrs FROM runs
        UNION ALL
        SELECT attrs['gen_ai.agent.name'] AS agent, event_names, event_attrs
        FROM spans
        WHERE attrs['gen_ai.agent.name'] != '' AND length(event_names) > 0 AND NOT arrayExists(prefix -> startsWith(SpanName, prefix), $supervisor_span_prefixes)
          AND operation NOT IN ('invoke_agent', 'chat', 'text_completion', 'generate_content', 'embeddings', 'execute_tool')
    ),
    signals AS (
        SELECT
            agent,
            event_name,
            multiIf(event_attr['alphatrace.alpha.symbol'] = '', '(no symbol)',
                    lengthUTF8(event_attr['alphatrace.alpha.symbol']) > 200, concat(substringUTF8(event_attr['alphatrace.alpha.symbol'], 1, 199), '…'),
                    event_attr['alphatrace.alpha.symbol']) AS symbol,
            multiIf(event_attr['alphatrace.alpha.direction'] = '', '(no direction)',
                    lengthUTF8(event_attr['alphatrace.alpha.direction']) > 40, concat(substringUTF8(event_attr['alphatrace.alpha.direction'], 1, 39), '…'),
                    event_attr['alphatrace.alpha.direction']) AS direction
        FROM event_spans
        ARRAY JOIN event_names AS event_name, event_attrs AS event_attr
        WHERE event_name IN ('alphatrace.alpha.signal', 'alphatrace.alpha.signal.invalid')
    ),
    signal_counts AS (
        SELECT agent, symbol, countIf(event_name = 'alphatrace.alpha.signal') AS valid, countIf(event_name = 'alphatrace.alpha.signal.invalid') AS invalid,
               sumMapIf(map(direction, toUInt64(1)), event_name = 'alphatrace.alpha.signal') AS by_direction
        FROM signals
        GROUP BY agent, symbol
    ),
    signal_figures AS (
        SELECT
            agent,
            sum(valid) AS alpha_signals,
            sum(invalid) AS invalid_signals,
            mapFromArrays(groupArrayIf(symbol, valid > 0), groupArrayIf(by_direction, valid > 0)) AS alpha_by_symbol
        FROM signal_counts
        GROUP BY agent
    ),
    agents AS (
        SELECT agent FROM run_figures
        UNION DISTINCT SELECT agent FROM llm_figures
        UNION DISTINCT SELECT agent FROM signal_figures
    ),
    figures AS (
        WITH
        -- Python's round(x, digits) for x >= 0, `scale` = 10^digits: x * scale rounded half-even on
        -- its exact value (Dekker's split gives the product's rounding error), then / scale.
        (x, scale) -> (floor(x * scale) + multiIf(
            x * scale - floor(x * scale) > 0.5, 1,
            x * scale - floor(x * scale) < 0.5, 0,
            ((134217729.0 * x - (134217729.0 * x - x)) * scale - x * scale) + (x - (134217729.0 * x - (134217729.0 * x - x))) * scale > 0, 1,
            ((134217729.0 * x - (134217729.0 * x - x)) * scale - x * scale) + (x - (134217729.0 * x - (134217729.0 * x - x))) * scale < 0, 0,
            toInt64(floor(x * scale)) % 2)) / scale AS py_round
        SELECT
            agent, runs, errors, skipped_killed, skipped_stale_data, outcomes, runs_without_outcome, runs_without_latency,
            length(latencies_ns) AS timed_runs,
            -- rank = (n - 1) * q / 100; value = low + (high - low) * (rank - floor(rank))
            arrayMap(q -> ((timed_runs - 1) * q) / 100.0, [50, 95, 99]) AS ranks,
            arrayMap(rank -> latencies_ns[toUInt64(floor(rank)) + 1]
                + (latencies_ns[least(toUInt64(floor(rank)) + 2, timed_runs)] - latencies_ns[toUInt64(floor(rank)) + 1]) * (rank - floor(rank)),
                ranks) AS percentiles_ns,
            first_start_ns, last_start_ns, kill_switch_errors_seen,
            llm_calls, llm_errors, simulated_llm_calls, unpriced_llm_calls, unpriced_models,
            tokens_in, tokens_out, tokens_cached, bad_token_values, model_costs, llm_operations,
            alpha_signals, invalid_signals, alpha_by_symbol,
            -- the report adds the rounded model costs, then rounds the sum
            arrayMap(py_round, model_costs, arrayResize([1e8], length(model_costs), 1e8)) AS rounded_model_costs,
            arrayMap(py_round,
                [if(runs = 0, 0, errors / runs),
                 if(timed_runs = 0, 0, arraySum(latencies_ns) / timed_runs / 1e6),
                 percentiles_ns[1] / 1e6, percentiles_ns[2] / 1e6, percentiles_ns[3] / 1e6,
                 if(timed_runs = 0, 0, latencies_ns[timed_runs] / 1e6),
                 arrayFold((total, cost) -> total + cost, rounded_model_costs, toFloat64(0))],
                [1e6, 1e3, 1e3, 1e3, 1e3, 1e3, 1e8]) AS rounded
        FROM agents
        LEFT JOIN run_figures USING (agent)
        LEFT JOIN llm_figures USING (agent)
        LEFT JOIN signal_figures USING (agent)
    )
SELECT
    agent,
    runs,
    errors,
    if(runs = 0, NULL, rounded[1]) AS error_rate,
    skipped_killed,
    skipped_stale_data,
    outcomes,
    runs_without_outcome,
    if(timed_runs = 0, NULL, rounded[2]) AS avg_latency_ms,
    if(timed_runs = 0, NULL, rounded[3]) AS p50_latency_ms,
    if(timed_runs = 0, NULL, rounded[4]) AS p95_latency_ms,
    if(timed_runs = 0, NULL, rounded[5]) AS p99_latency_ms,
    if(timed_runs = 0, NULL, rounded[6]) AS max_latency_ms,
    runs_without_latency,
    llm_calls,
    llm_errors,
    simulated_llm_calls,
    unpriced_llm_calls,
    unpriced_models,
    tokens_in,
    tokens_out,
    tokens_cached,
    tokens_in + tokens_out AS tokens,
    bad_token_values,
    if(length(model_costs) = 0, NULL, rounded[7]) AS cost_usd,
    llm_operations,
    alpha_signals,
    alpha_by_symbol,
    invalid_signals,
    kill_switch_errors_seen,
    -- ISO 8601 UTC to the microsecond, as the report writes it (no fraction when it is zero)
    if(first_start_ns = 0, NULL, concat(
        formatDateTime(toDateTime(intDiv(first_start_ns, 1000000000), 'UTC'), '%Y-%m-%dT%H:%i:%S', 'UTC'),
        if(intDiv(first_start_ns, 1000) % 1000000 = 0, '', concat('.', leftPad(toString(intDiv(first_start_ns, 1000) % 1000000), 6, '0'))),
        'Z')) AS first_run_at,
    if(last_start_ns = 0, NULL, concat(
        formatDateTime(toDateTime(intDiv(last_start_ns, 1000000000), 'UTC'), '%Y-%m-%dT%H:%i:%S', 'UTC'),
        if(intDiv(last_start_ns, 1000) % 1000000 = 0, '', concat('.', leftPad(toString(intDiv(last_start_ns, 1000) % 1000000), 6, '0'))),
        'Z')) AS last_run_at
FROM figures
ORDER BY agent
