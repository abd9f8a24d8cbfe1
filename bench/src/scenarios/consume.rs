//! Capacity: how many CDC records per second one instance consumes and discards when none of
//! its subscribers follows their orders (every instance reads every partition, so this bounds
//! the whole fleet's change rate). A fresh instance reads a bench-only topic; the bench copies
//! one real Debezium record of `order_versions` under fresh order ids, produces them as fast as
//! Kafka takes them, and times the instance's `ordercast_cdc_events_total` until it has them all.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::{create_orders, gql, open_many, ADD_ITEM, SET_QUANTITY};
use crate::server::Server;
use crate::stack::consumer_at_end;
use crate::Ctx;

const VERSIONS_TOPIC: &str = "ordercast.public.order_versions";
const PARTITIONS: i32 = 3;

pub(crate) async fn consume(ctx: &mut Ctx, s1: &Server) -> Result<Value> {
    let template = real_record(ctx, s1).await?;
    let (subscribers, orders) = if ctx.args.quick { (1_000, 100) } else { (10_000, 1_000) };
    let mut results = Vec::new();
    for (subscribers, orders) in [(0, 0), (subscribers, orders)] {
        results.push(consume_case(ctx, s1, &template, subscribers, orders).await?);
    }
    Ok(json!(results))
}

/// One fresh instance with `subscribers` subscriptions spread over `orders` real orders (none of
/// them in the records), consuming a fresh topic.
async fn consume_case(
    ctx: &mut Ctx,
    s1: &Server,
    template: &Template,
    subscribers: usize,
    orders: usize,
) -> Result<Value> {
    let records = if ctx.args.quick {
        20_000
    } else {
        ctx.args.consume_records
    };
    let brokers = ctx.args.kafka_brokers.clone();
    let topic = format!("ordercast-bench.consume.{}", Uuid::now_v7().simple());
    create_topic(&brokers, &topic).await?;

    let server = Server::start_with(
        ctx,
        ctx.args.base_port + 2,
        "instance-consume",
        &[("ORDERCAST_CDC_TOPIC", &topic)],
    )
    .await?;
    let followed = create_orders(ctx, s1, orders, true).await?;
    let (sockets, _) = open_many(ctx, server.addr(), subscribers, &followed).await?;
    if sockets.len() != subscribers {
        bail!("only {} of {subscribers} subscriptions opened", sockets.len());
    }
    // Let it assign the new topic's partitions (it starts at their end, which is 0 here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events_before = events_total(&server.metrics().await);
    let cpu_before = server.cpu_seconds();

    eprintln!("[consume] producing {records} records to {topic}; {subscribers} subscribers of {orders} other orders");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(records);
    for _ in 0..records {
        let order = Uuid::now_v7().to_string();
        let payload = template.payload.replace(&template.order_id, &order);
        let record = FutureRecord::to(&topic).key(&order).payload(&payload);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((error, _)) => bail!("producing: {error}"),
        }
        if deliveries.len() % 10_000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let produced_s = started.elapsed().as_secs_f64();
    for delivery in deliveries {
        if let Ok(Err((error, _))) = delivery.await {
            bail!("a record was not delivered: {error}");
        }
    }

    let deadline = Instant::now() + Duration::from_secs(300);
    let consumed = loop {
        let consumed = events_total(&server.metrics().await) - events_before;
        if consumed >= records as f64 || Instant::now() > deadline {
            break consumed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let consumed_s = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu_before;
    let rss = server.rss_kib();
    drop(sockets);
    server.stop().await;
    delete_topic(&brokers, &topic).await;

    let rate = consumed / consumed_s;
    let cpu_us = cpu / consumed.max(1.0) * 1e6;
    eprintln!(
        "[consume] {consumed} of {records} in {consumed_s:.1} s: {rate:.0}/s, {cpu_us:.1} us of instance CPU each"
    );
    ctx.rows.push(format!(
        "| consume | {records} records of orders nobody follows, {PARTITIONS} partitions, one fresh instance with {subscribers} subscribers of {orders} other orders | {rate:.0} records/s consumed and discarded (produced in {produced_s:.1} s, all consumed after {consumed_s:.1} s); {cpu_us:.1} µs instance CPU per record; RSS {rss} KiB |"
    ));
    Ok(json!({
        "records": records, "consumed": consumed, "partitions": PARTITIONS,
        "subscribers": subscribers, "followed_orders": orders,
        "produce_s": produced_s, "consume_s": consumed_s, "records_per_s": rate,
        "instance_cpu_s": cpu, "instance_cpu_us_per_record": cpu_us, "instance_rss_kib": rss,
        "record_bytes": template.payload.len(),
    }))
}

/// One real Debezium record of `order_versions`, and the order id it names.
struct Template {
    payload: String,
    order_id: String,
}

async fn real_record(ctx: &Ctx, s1: &Server) -> Result<Template> {
    let consumer = consumer_at_end(&ctx.args.kafka_brokers, VERSIONS_TOPIC)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let order = create_orders(ctx, s1, 1, true).await?[0];
    // A basket of `--consume-items` products: the record's size grows with the order's state.
    for product in ctx
        .products
        .iter()
        .skip(1)
        .take(ctx.args.consume_items.saturating_sub(1))
    {
        gql(
            &ctx.http,
            &s1.base,
            &ctx.token,
            ADD_ITEM,
            json!({ "o": order, "p": product }),
        )
        .await?;
    }
    let vars = json!({ "o": order, "p": ctx.products[0], "q": 3 });
    gql(&ctx.http, &s1.base, &ctx.token, SET_QUANTITY, vars).await?;
    let order_id = order.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(message) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await else {
            continue;
        };
        let message = message.context("reading order versions")?;
        let Some(payload) = message.payload().and_then(|p| std::str::from_utf8(p).ok()) else {
            continue;
        };
        if payload.contains(&order_id) && payload.contains("ITEM_CHANGED") {
            return Ok(Template {
                payload: payload.to_owned(),
                order_id,
            });
        }
    }
    bail!("no record of the bench's order reached {VERSIONS_TOPIC} within 30 s")
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new().set("bootstrap.servers", brokers).create()?)
}

async fn create_topic(brokers: &str, topic: &str) -> Result<()> {
    let results = admin(brokers)?
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for result in results {
        if let Err((name, error)) = result {
            bail!("creating {name}: {error}");
        }
    }
    Ok(())
}

async fn delete_topic(brokers: &str, topic: &str) {
    if let Ok(admin) = admin(brokers) {
        let _ = admin.delete_topics(&[topic], &AdminOptions::new()).await;
    }
}

/// `ordercast_cdc_events_total`, summed over its labels.
fn events_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("ordercast_cdc_events_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
