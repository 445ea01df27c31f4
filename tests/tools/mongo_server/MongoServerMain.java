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
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.util.List;

public class MongoServerMain {
    public static void main(String[] args) throws Exception {
        MongoVersion mongo44 = new MongoVersion() {
            public List<Integer> getVersionArray() { return List.of(4, 4, 0); }
            public int getWireVersion() { return 9; }
        };
        MongoServer server = new MongoServer(new MemoryBackend().version(mongo44));
        server.bind(args[0], Integer.parseInt(args[1]));
        System.out.println("LISTENING " + server.getLocalAddress().getPort());
        System.out.flush();
        while (System.in.read() != -1) { }
        server.shutdownNow();
        System.exit(0);
    }
}
