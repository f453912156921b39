//! Runs the example: a server in process, then a few questions asked over the network.

fn main() -> anyhow::Result<()> {
    let running = where_is_it::serve(
        "item,place\n\
         Car keys,hook by the door\n\
         Passport,desk drawer\n\
         Phone charger,kitchen shelf\n",
    )?;
    for question in std::env::args()
        .skip(1)
        .chain(["keys".into(), "PASS".into()])
    {
        println!("{}", where_is_it::ask(&running, &question)?);
    }
    Ok(())
}
