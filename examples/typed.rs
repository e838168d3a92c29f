//! Typed values and keys (async): serde values in JSON or MessagePack, integer and tuple keys
//! that scan in their natural order. `cargo run --example typed -- <dir>`

use rave::stream::TryStreamExt;
use rave::view::MsgPack;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reading {
    sensor: String,
    celsius: f64,
}

#[tokio::main]
async fn main() -> rave::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "./data".into());
    let db = rave::Rave::open(&dir, Default::default())?;

    // Keys are (sensor id, time): a range scan returns them by sensor, then by time.
    let readings = db
        .sublevel("readings")
        .typed::<Reading>()
        .with_keys::<(u32, u64)>();
    for (id, time, celsius) in [(2u32, 10u64, 19.5), (1, 200, 21.0), (1, 30, 20.5)] {
        let reading = Reading {
            sensor: format!("s{id}"),
            celsius,
        };
        readings.put((id, time), &reading).await?;
    }
    let sensor_1: Vec<((u32, u64), Reading)> = readings
        .range((1u32, 0u64)..(2, 0))
        .await?
        .try_collect()
        .await?;
    for ((id, time), reading) in &sensor_1 {
        println!("sensor {id} at {time}: {} °C", reading.celsius);
    }

    // The same values in MessagePack, in another sublevel.
    let packed = db
        .sublevel("packed")
        .typed::<Reading>()
        .with_codec::<MsgPack>();
    packed.put("latest", &sensor_1[1].1).await?;
    println!("packed: {:?}", packed.get("latest").await?);
    db.close().await
}
