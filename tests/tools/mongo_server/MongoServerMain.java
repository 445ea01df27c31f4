// TEST TOOL, not project code: starts mongo-java-server (de.bwaldvogel, in-memory backend) for
// tests/goworld/mongo_server.py, which compiles this file into ~/.cache/goworld-test/.
//
//   java -cp <classes>:<mongo-java-server classpath> MongoServerMain <host> <port>
//
// Port 0 picks a free port. Prints "LISTENING <port>" once bound; exits when stdin closes, so
// the server never outlives the test process that started it. mongo-java-server reports
// MongoDB 4.0 (wire version 7), which recent PyMongo releases refuse (4.20 wants wire version 9,
// MongoDB 4.4), so the backend announces 4.4; it implements every command the goworld backends
// send (upserts, bulk writes, findAndModify, $in and range queries).
//
// The backend also answers the legacy `getnonce` command with {nonce: <16 hex chars>, ok: 1}:
// GoWorld's Go driver (mgo, used by GoWorld's own test_game that `goworld bench --only
// sidebyside` runs) sends it on every new connection, and mongo-java-server does not know it.
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.Document;
import io.netty.channel.Channel;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

public class MongoServerMain {
    public static void main(String[] args) throws Exception {
        MongoVersion mongo44 = new MongoVersion() {
            public List<Integer> getVersionArray() { return List.of(4, 4, 0); }
            public int getWireVersion() { return 9; }
        };
        MemoryBackend backend = new MemoryBackend() {
            @Override
            public Document handleCommand(Channel channel, String database, String command,
                                          Document query) {
                if (command.equalsIgnoreCase("getnonce")) {
                    Document reply = new Document("nonce",
                        String.format("%016x", ThreadLocalRandom.current().nextLong()));
                    reply.put("ok", 1.0);
                    return reply;
                }
                return super.handleCommand(channel, database, command, query);
            }
        };
        MongoServer server = new MongoServer(backend.version(mongo44));
        server.bind(args[0], Integer.parseInt(args[1]));
        System.out.println("LISTENING " + server.getLocalAddress().getPort());
        System.out.flush();
        while (System.in.read() != -1) { }
        server.shutdownNow();
        System.exit(0);
    }
}
